"""Ingest: seed files to articles (text, title, date, chrome) to sentences to passages."""
