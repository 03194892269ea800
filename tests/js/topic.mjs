// Broadcast from Database as Supabase documents the client side: a signed-in user on a private
// channel, one callback per event, each printed as one JSON line.
// usage: node --experimental-websocket topic.mjs <supabaseUrl> <anonKey> <topic> <userJwt>
// Exits when stdin closes, so the test that spawned it controls its lifetime.
import { createClient, version } from './supabase.mjs'
import readline from 'node:readline'

const [url, key, topic, userJwt] = process.argv.slice(2)
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n')
out({ kind: 'client', version })

const supabase = createClient(url, key, { auth: { persistSession: false, autoRefreshToken: false } })
await supabase.realtime.setAuth(userJwt) // Needed for Realtime Authorization
const changes = supabase
  .channel(topic, {
    config: { private: true },
  })
  .on('broadcast', { event: 'INSERT' }, (payload) => out({ kind: 'broadcast', payload }))
  .on('broadcast', { event: 'UPDATE' }, (payload) => out({ kind: 'broadcast', payload }))
  .on('broadcast', { event: 'DELETE' }, (payload) => out({ kind: 'broadcast', payload }))
  .subscribe((status, err) => out({ kind: 'status', status, error: err ? String(err.message || err) : null }))

readline.createInterface({ input: process.stdin }).on('close', async () => {
  await supabase.removeChannel(changes)
  process.exit(0)
})
