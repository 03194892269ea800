// The Inspector page: polls /api/state, joins channels over a raw Phoenix socket (vsn 1.0.0),
// and asks /api/explain who would receive a change. Data is written with textContent only.
'use strict'

const $ = (id) => document.getElementById(id)
const el = (tag, text, cls) => {
  const node = document.createElement(tag)
  if (text !== undefined && text !== null) node.textContent = String(text)
  if (cls) node.className = cls
  return node
}
const row = (cells) => {
  const tr = document.createElement('tr')
  cells.forEach((cell) => {
    const td = document.createElement('td')
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? '' : String(cell)
    tr.appendChild(td)
  })
  return tr
}
const ago = (ms, now) => `${Math.max(0, Math.round((now - ms) / 1000))} s ago`
const time = (ms) => new Date(ms).toLocaleTimeString()
const ms = (v) => (v === null || v === undefined ? '—' : `${v} ms`)

let config = null
let watched = null

async function refresh () {
  const state = await (await fetch('/api/state')).json()
  $('clock').textContent = 'updated ' + time(state.now)
  const body = $('connections').tBodies[0]
  body.replaceChildren()
  $('connection-count').textContent = `(${state.connections.length})`
  for (const c of state.connections) {
    const channels = el('div')
    for (const ch of c.channels) {
      const line = el('div')
      line.appendChild(el('span', ch.topic, 'pill'))
      line.appendChild(el('span', ` as ${ch.role}${ch.sub ? ' ' + ch.sub : ''}${ch.private ? ', private' : ''}:`, 'muted'))
      for (const b of ch.bindings) {
        line.appendChild(el('span', ` ${b.event} ${b.schema}.${b.table}${b.filter ? ' ' + b.filter : ''};`, 'mono'))
      }
      if (ch.presence) line.appendChild(el('span', ` presence ${ch.presence_key}: ${JSON.stringify(ch.presence)}`, 'mono'))
      channels.appendChild(line)
    }
    const id = el('a', c.connection_id, 'mono')
    id.href = '#frames'
    id.onclick = () => { watched = c.connection_id; $('frames-of').textContent = watched; frames() }
    const tr = row([id, c.role, c.sub || '—', channels, ago(c.last_heard, state.now)])
    tr.dataset.connection = c.connection_id
    body.appendChild(tr)
  }
  const outbox = $('outbox').tBodies[0]
  outbox.replaceChildren()
  for (const e of state.outbox.slice(0, 30)) {
    const list = el('div')
    for (const d of e.deliveries) list.appendChild(el('div', `${d.topic} → ${d.connection_id}`, 'mono'))
    const button = el('button', 'explain', 'secondary')
    button.disabled = e.id === null || e.kind !== 'change'
    button.onclick = () => { $('explain-outbox').value = e.id; explain() }
    const l = e.latency_ms
    outbox.appendChild(row([e.id ?? '—', `${e.op || e.kind} ${e.schema || ''}.${e.table || ''}`,
      ms(l.captured_to_picked_up), ms(l.picked_up_to_posted),
      e.deliveries.length ? ms(l.posted_to_acked) : ms(l.picked_up_to_acked),
      e.deliveries.length ? list : el('span', 'none', 'muted'), button]))
  }
  const refusals = $('refusals').tBodies[0]
  refusals.replaceChildren()
  for (const r of state.refusals.slice(0, 30)) {
    refusals.appendChild(row([time(r.at), r.kind, r.topic || '—', r.code || r.status, el('span', r.reason, 'mono')]))
  }
  if (watched) frames()
}

async function frames () {
  const list = await (await fetch('/api/frames/' + encodeURIComponent(watched))).json()
  $('frames').replaceChildren(...list.map((f) => el('div', `${time(f.at)} ${f.direction === 'in' ? '→' : '←'} ${f.text}`, 'mono')))
}

// -- join a channel --------------------------------------------------------------------------
let socket = null
let heartbeat = null
let ref = 0
const log = (direction, text) => {
  $('join-log').prepend(el('div', `${new Date().toLocaleTimeString()} ${direction} ${text}`, 'mono'))
}
const push = (topic, event, payload) => {
  const frame = JSON.stringify({ topic, event, payload, ref: String(++ref), join_ref: '1' })
  socket.send(frame)
  log('→', frame)
}

async function join () {
  leave()
  $('join-log').replaceChildren()
  $('join-status').textContent = 'joining…'
  ref = 0
  let claims, bindings
  try {
    claims = JSON.parse($('join-claims').value || '{}')
    bindings = JSON.parse($('join-bindings').value || '[]')
  } catch (error) {
    $('join-status').textContent = 'claims and postgres_changes must be JSON: ' + error.message
    return
  }
  const role = $('join-role').value
  const answer = await (await fetch('/api/token', { method: 'POST', body: JSON.stringify({ role, claims }) })).json()
  if (!answer.token) { $('join-status').textContent = answer.message; return }
  const topic = 'realtime:' + $('join-topic').value
  const key = $('join-presence').value
  socket = new WebSocket(`${config.ws_url}?apikey=${encodeURIComponent(answer.token)}&vsn=1.0.0`)
  socket.onopen = () => {
    $('join-status').textContent = 'connected'
    push(topic, 'phx_join', {
      config: { broadcast: { self: true, ack: false }, presence: { key, enabled: !!key }, postgres_changes: bindings, private: $('join-private').value === 'true' },
      access_token: answer.token
    })
    if (key) push(topic, 'presence', { type: 'presence', event: 'track', payload: { from: 'inspector' } })
    heartbeat = setInterval(() => push('phoenix', 'heartbeat', {}), 25000)
  }
  socket.onmessage = (event) => {
    log('←', event.data)
    const message = JSON.parse(event.data)
    if (message.event === 'phx_reply' && message.topic === topic && message.ref === '1') {
      $('join-status').textContent = message.payload.status === 'ok' ? 'joined ' + topic : 'refused: ' + JSON.stringify(message.payload.response)
    }
  }
  socket.onclose = (event) => { $('join-status').textContent = `closed ${event.code}`; clearInterval(heartbeat) }
}

function leave () {
  if (socket) { socket.close(1000); socket = null }
  clearInterval(heartbeat)
}

// -- explain ---------------------------------------------------------------------------------
const verdict = (check) => {
  const span = el('span', check.ok === true ? '✔ ' : check.ok === false ? '✘ ' : '– ', check.ok === true ? 'ok' : check.ok === false ? 'no' : 'muted')
  const box = el('div')
  box.appendChild(span)
  box.appendChild(el('span', check.detail))
  return box
}

async function explain () {
  const [schema, table] = $('explain-table').value.includes('.') ? $('explain-table').value.split('.', 2) : ['public', $('explain-table').value]
  const body = { schema, table, type: $('explain-type').value }
  const where = $('explain-where').value.trim()
  try {
    if ($('explain-outbox').value.trim()) {
      Object.assign(body, { outbox_id: Number($('explain-outbox').value.trim()) })
    } else if (where) {
      const at = where.indexOf('=')
      body.where = { [where.slice(0, at).trim()]: where.slice(at + 1) }
    } else {
      body.record = JSON.parse($('explain-record').value || 'null')
      if ($('explain-old').value.trim()) body.old_record = JSON.parse($('explain-old').value)
    }
  } catch (error) {
    $('explain-summary').textContent = 'record and old_record must be JSON: ' + error.message
    return
  }
  const response = await fetch('/api/explain', { method: 'POST', body: JSON.stringify(body) })
  const answer = await response.json()
  const result = $('explain-result').tBodies[0]
  result.replaceChildren()
  if (!response.ok) { $('explain-summary').textContent = answer.message; return }
  $('explain-summary').textContent = `${answer.change.type} ${answer.change.schema}.${answer.change.table}: ${answer.receiving} of ${answer.subscribers.length} bindings receive it`
  for (const s of answer.subscribers) {
    const tr = row([el('span', s.receives ? '✔ receives' : '✘ ' + s.because, s.receives ? 'ok' : 'no'),
      el('span', `${s.topic} #${s.binding_id}`, 'mono'), `${s.role}${s.sub ? ' ' + s.sub : ''}`,
      verdict(s.checks.event), verdict(s.checks.filter), verdict(s.checks.token), verdict(s.checks.rls), verdict(s.checks.columns)])
    tr.dataset.sub = s.sub || ''
    tr.dataset.receives = String(s.receives)
    result.appendChild(tr)
  }
}

async function main () {
  config = await (await fetch('/api/config')).json()
  $('endpoint').textContent = config.ws_url
  $('join').onclick = join
  $('leave').onclick = leave
  $('explain').onclick = explain
  await refresh()
  setInterval(() => refresh().catch(() => {}), 1000)
}
main()
