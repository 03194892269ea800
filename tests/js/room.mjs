// A supabase-js participant in a broadcast/presence room, driven by JSON commands on stdin and
// reporting every callback as one JSON line on stdout.
// usage: node --experimental-websocket room.mjs <supabaseUrl> <key> <vsn|default> <room> '<config json>'
// commands: {"op":"send","event":..,"payload":..} {"op":"httpSend","event":..,"payload":..}
//           {"op":"track","payload":..} {"op":"untrack"}
import { createClient, version } from './supabase.mjs'
import readline from 'node:readline'

const [url, key, vsn, room, config] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
out({ kind: 'client', version })

const supabase = createClient(url, key, {
  auth: { persistSession: false, autoRefreshToken: false },
  realtime: vsn === 'default' ? {} : { vsn },
})
const channel = supabase.channel(room, { config: JSON.parse(config) })
channel
  .on('broadcast', { event: '*' }, (message) => out({ kind: 'broadcast', message }))
  .on('presence', { event: 'sync' }, () => out({ kind: 'sync', state: channel.presenceState() }))
  .on('presence', { event: 'join' }, ({ key, newPresences }) => out({ kind: 'join', key, newPresences }))
  .on('presence', { event: 'leave' }, ({ key, leftPresences }) => out({ kind: 'leave', key, leftPresences }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  const command = JSON.parse(line)
  try {
    if (command.op === 'send') {
      const result = await channel.send({ type: 'broadcast', event: command.event, payload: command.payload })
      out({ kind: 'sent', result })
    } else if (command.op === 'httpSend') {
      out({ kind: 'httpSent', result: await channel.httpSend(command.event, command.payload) })
    } else if (command.op === 'track') {
      out({ kind: 'tracked', result: await channel.track(command.payload) })
    } else if (command.op === 'untrack') {
      out({ kind: 'untracked', result: await channel.untrack() })
    }
  } catch (error) {
    out({ kind: 'error', error: String(error && error.message || error) })
  }
})
lines.on('close', async () => {
  await supabase.removeAllChannels()
  process.exit(0)
})
