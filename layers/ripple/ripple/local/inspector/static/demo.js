// The school-CRM demo: supabase-js in the browser against the local stack. Rows come from
// /api/rows as the signed-in user (RLS decides, as PostgREST would); changes, notifications and
// presence arrive over Ripple's WebSocket.
'use strict'

const USERS = {
  ada: { id: '1a000000-0000-4000-8000-000000000001', name: 'Ada Admin', org: '0a000000-0000-4000-8000-00000000000a' },
  tomas: { id: '1a000000-0000-4000-8000-000000000002', name: 'Tomás Teacher', org: '0a000000-0000-4000-8000-00000000000a' },
  bea: { id: '1b000000-0000-4000-8000-000000000001', name: 'Bea Admin', org: '0b000000-0000-4000-8000-00000000000b' }
}
const $ = (id) => document.getElementById(id)
const el = (tag, text, cls) => { const n = document.createElement(tag); n.textContent = text ?? ''; if (cls) n.className = cls; return n }
const params = new URLSearchParams(location.search)
const who = USERS[params.get('user')] ? params.get('user') : 'ada'
const me = USERS[who]
$('user').value = who
$('user').onchange = () => { location.search = '?user=' + $('user').value }

const students = new Map()
const groups = new Map()
const inbox = []

function render (table, rows, cells) {
  const body = $(table).tBodies[0]
  body.replaceChildren()
  for (const r of [...rows.values()].sort((a, b) => (a.full_name || a.name).localeCompare(b.full_name || b.name))) {
    const tr = document.createElement('tr')
    tr.dataset.id = r.id
    if (r._fresh) { tr.className = 'flash'; delete r._fresh }
    for (const c of cells(r)) tr.appendChild(el('td', c))
    body.appendChild(tr)
  }
}
const renderStudents = () => render('students', students, (s) => [s.full_name, s.email || '—', s.payment_status])
const renderGroups = () => render('groups', groups, (g) => [g.name, g.capacity])
function renderInbox () {
  $('bell-count').textContent = String(inbox.filter((n) => !n.read_at).length)
  $('bell-list').replaceChildren(...(inbox.length ? inbox.map((n) => el('div', `${n.title}: ${n.message}`)) : [el('div', 'No notifications', 'muted')]))
}
const event = (text) => $('events').prepend(el('div', `${new Date().toLocaleTimeString()} ${text}`, 'mono'))

function apply (map, payload, redraw) {
  if (payload.eventType === 'DELETE') map.delete(payload.old.id)
  else map.set(payload.new.id, { ...payload.new, _fresh: true })
  event(`${payload.eventType} ${payload.table} ${payload.new?.full_name || payload.new?.name || payload.old?.id || ''}`)
  redraw()
}

async function rows (token, table) {
  const response = await fetch('/api/rows?table=' + table, { headers: { Authorization: 'Bearer ' + token } })
  if (!response.ok) throw new Error((await response.json()).message)
  return response.json()
}

async function main () {
  const config = await (await fetch('/api/config')).json()
  const { token } = await (await fetch('/api/token', { method: 'POST', body: JSON.stringify({ role: 'authenticated', claims: { sub: me.id } }) })).json()
  // vsn 1.0.0: realtime-js sends broadcasts as binary frames under 2.0.0, which API Gateway closes.
  const client = window.supabase.createClient(config.api_url, config.anon_key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { vsn: '1.0.0' }
  })
  await client.realtime.setAuth(token)

  const [org] = await rows(token, 'public.organizations')
  $('school').textContent = org ? org.name : 'School CRM'
  for (const s of await rows(token, 'public.students')) students.set(s.id, s)
  for (const g of await rows(token, 'public.groups')) groups.set(g.id, g)
  for (const n of await rows(token, 'public.notifications')) if (n.user_id === me.id) inbox.push(n)
  renderStudents(); renderGroups(); renderInbox()

  client.channel('crm')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'students' }, (p) => apply(students, p, renderStudents))
    .on('postgres_changes', { event: '*', schema: 'public', table: 'groups' }, (p) => apply(groups, p, renderGroups))
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notifications', filter: 'user_id=eq.' + me.id }, (p) => {
      inbox.unshift(p.new); renderInbox(); event('notification ' + p.new.title)
    })
    .subscribe((status, error) => { $('status').textContent = status + (error ? ': ' + error.message : ''); document.body.dataset.crm = status })

  const room = client.channel('online:' + me.org, { config: { presence: { key: me.id } } })
  room
    .on('presence', { event: 'sync' }, () => {
      const names = Object.values(room.presenceState()).map((metas) => metas[0].name).sort()
      $('online').replaceChildren(...names.map((n) => el('li', n)))
      document.body.dataset.online = String(names.length)
    })
    .subscribe(async (status) => {
      document.body.dataset.presence = status
      if (status === 'SUBSCRIBED') await room.track({ name: me.name, online_at: new Date().toISOString() })
    })
  $('bell').onclick = () => $('bell').classList.toggle('open')
}
main().catch((error) => { $('status').textContent = 'error: ' + error.message })
