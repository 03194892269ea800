// The supabase-js under test. SUPABASE_JS names the installed package: '@supabase/supabase-js'
// (the current release, the default) or 'supabase-js-oldest' (the oldest supported; package.json).
import { readFileSync } from 'node:fs'

const name = process.env.SUPABASE_JS || '@supabase/supabase-js'
export const { createClient } = await import(name)
export const version = JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version
