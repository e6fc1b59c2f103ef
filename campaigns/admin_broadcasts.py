"""Admin for broadcasts: composer, audience preview, schedule, live progress and stats."""
