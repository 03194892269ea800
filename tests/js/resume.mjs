// supabase-js following postgres_changes and resuming after a reconnect: the app keeps the last
// position it saw (errors[0] = "position:<n>") in the channel's replay_changes config, so the
// client's own automatic rejoin asks for exactly what it missed. Prints each change and status
// as one JSON line. Exits when stdin closes.
// usage: node --experimental-websocket resume.mjs <supabaseUrl> <key> <channel> '<bindings json>' <after> [userJwt]
import { createClient, version } from './supabase.mjs'
import readline from 'node:readline'

const [url, key, channelName, spec, after, userJwt] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
out({ kind: 'client', version })

// The user's token through supabase-js's `accessToken` option, so every rejoin after a reconnect
// carries it (a token handed to realtime.setAuth is replaced by the session's on reconnect).
const supabase = createClient(url, key, userJwt ? { accessToken: async () => userJwt } : {})
await supabase.realtime.setAuth()  // the first join carries it too

const resume = { after: Number(after), limit: 1000 }
let channel = supabase.channel(channelName, { config: { broadcast: { replay_changes: resume } } })
JSON.parse(spec).forEach((binding) => {
  channel = channel.on('postgres_changes', binding, (payload) => {
    const tag = (payload.errors || []).find((e) => e.startsWith('position:'))
    if (tag) resume.after = Number(tag.slice('position:'.length))
    out({ kind: 'change', position: resume.after, payload })
  })
})
channel
  .on('system', {}, (payload) => out({ kind: 'system', payload }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

const lines = readline.createInterface({ input: process.stdin })
lines.on('close', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
