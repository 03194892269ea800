// supabase-js on one broadcast channel, printing every broadcast and system message as one JSON
// line: the client side of broadcast replay.
// usage: node --experimental-websocket replay.mjs <supabaseUrl> <key> <channel> [userJwt]
// RIPPLE_CHANNEL_CONFIG (JSON) is the channel's `config`, e.g.
// {"private": true, "broadcast": {"replay": {"since": 1700000000000, "limit": 25}}}.
// Exits when stdin closes.
import { createClient, version } from './supabase.mjs'
import readline from 'node:readline'

const [url, key, channelName, userJwt] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
out({ kind: 'client', version })

const supabase = createClient(url, key, { auth: { persistSession: false, autoRefreshToken: false } })
if (userJwt) await supabase.realtime.setAuth(userJwt)

supabase
  .channel(channelName, { config: JSON.parse(process.env.RIPPLE_CHANNEL_CONFIG || '{}') })
  .on('broadcast', { event: '*' }, (message) => out({ kind: 'broadcast', message }))
  .on('system', {}, (payload) => out({ kind: 'system', payload }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

const lines = readline.createInterface({ input: process.stdin })
lines.on('close', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
