"""Templated Word and Excel documents for committees: pure functions, no Prefect.

catalog    which documents each phase sends (`documents_for_phase`) and `render` of one
builders   per-kind content: template context, Word tables, Excel sheets
yeardata   what a plan year shares across its documents, computed once
content    the Swedish headings, questions, controls and criteria
text       Jinja2: built-in templates (templates/docs/) and sandboxed organisation overrides
word       markup -> .docx, and reading filled-in fields back (`read_fields`)
excel      sheet specs -> .xlsx, and reading the identity sheet back (`read_xlsx_meta`)
sanitize   cleaning of untrusted text, cell values, file names and paths
"""
