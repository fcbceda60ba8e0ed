"""What every feature builds on: settings, the database (the one place that commits), the
tables, the regimen content, logging and the outbox table."""
