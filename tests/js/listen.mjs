// Subscribe with the unmodified supabase-js client and print every event as one JSON line.
// usage: node --experimental-websocket listen.mjs <supabaseUrl> <key> <vsn|default> <channel> '<bindings json>'
// Exits when stdin closes, so the test that spawned it controls its lifetime.
import { createClient } from '@supabase/supabase-js'

const [url, key, vsn, channelName, spec] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')

const supabase = createClient(url, key, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: vsn === 'default' ? {} : { vsn },
})

let channel = supabase.channel(channelName)
JSON.parse(spec).forEach((binding, index) => {
  channel = channel.on('postgres_changes', binding, (payload) => out({ kind: 'change', index, payload }))
})
channel
  .on('system', {}, (payload) => out({ kind: 'system', payload }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

process.stdin.resume()
process.stdin.on('end', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
