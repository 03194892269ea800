// Subscribe with the unmodified supabase-js client and print every event as one JSON line.
// usage: node --experimental-websocket listen.mjs <supabaseUrl> <key> <vsn|default> <channel> '<bindings json>' [userJwt]
// With a user JWT the client connects with <key> (the anon key) and signs in the channel with
// realtime.setAuth, as an app with a signed-in user does. Commands on stdin, one JSON per line:
// {"op":"setAuth","token":..} hands the client a refreshed token. Exits when stdin closes, so
// the test that spawned it controls its lifetime. RIPPLE_CHANNEL_CONFIG (JSON) is the channel's
// `config` (e.g. {"broadcast": {"replication_ready": true}}).
import { createClient, version } from './supabase.mjs'
import readline from 'node:readline'

const [url, key, vsn, channelName, spec, userJwt] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
out({ kind: 'client', version })

const supabase = createClient(url, key, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: vsn === 'default' ? {} : { vsn },
})

if (userJwt) await supabase.realtime.setAuth(userJwt)

let channel = supabase.channel(channelName, { config: JSON.parse(process.env.RIPPLE_CHANNEL_CONFIG || '{}') })
JSON.parse(spec).forEach((binding, index) => {
  channel = channel.on('postgres_changes', binding, (payload) => out({ kind: 'change', index, payload }))
})
channel
  .on('system', {}, (payload) => out({ kind: 'system', payload }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  const command = JSON.parse(line)
  if (command.op === 'setAuth') {
    await supabase.realtime.setAuth(command.token)
    out({ kind: 'auth', ok: true })
  }
})
lines.on('close', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
