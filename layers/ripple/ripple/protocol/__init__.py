"""The Phoenix channels wire protocol as Supabase Realtime speaks it."""
