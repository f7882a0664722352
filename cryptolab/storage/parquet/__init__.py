"""The Parquet file layer of the archive: the day files' layout and schema, the object store
(a directory or S3), reading archived days (exact, merged with the database) and
attaching them to a session so SQL modules see one history; stats that verify a day.

Written by the archive job (`cryptolab.archive`), read by the analyses: it sits below
both, so analysis never imports the archive job.
"""
