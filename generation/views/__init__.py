"""The generation pages, one module per page group: jobs and systems, audits, best-of-N sampling."""
