// Uploads FILE to a tus server with tus-js-client under Node, resuming through failures.
// usage: node tusjs_upload.mjs ENDPOINT TOKEN FILE CHUNK_SIZE
// Prints the upload URL on success; exits non-zero on failure.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.TUS_JS_CLIENT_DIR + '/');
const tus = require('tus-js-client');
const [endpoint, token, path, chunkSize] = process.argv.slice(2);
const data = readFileSync(path);
const upload = new tus.Upload(data, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: Number(chunkSize),
  retryDelays: Array(60).fill(200),
  metadata: { filename: 'photo.png', filetype: 'image/png' },
  onError(error) {
    console.error(`upload failed: ${error}`);
    process.exit(1);
  },
  onSuccess() {
    console.log(upload.url);
  },
});
upload.start();
