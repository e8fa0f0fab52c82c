"""Uploads FILE to a tus server with tuspy, resuming through failures.

usage: tuspy_upload.py ENDPOINT TOKEN FILE CHUNK_SIZE
Prints the upload URL on success; exits non-zero on failure.
"""
import sys

from tusclient import client

endpoint, token, path, chunk_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tus = client.TusClient(endpoint, headers={"Authorization": "Bearer " + token})
uploader = tus.uploader(path, chunk_size=chunk_size, retries=60, retry_delay=0.2)
uploader.upload()
print(uploader.url)
