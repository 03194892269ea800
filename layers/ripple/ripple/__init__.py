"""Ripple: serverless realtime for PostgreSQL, speaking the Supabase Realtime protocol."""
