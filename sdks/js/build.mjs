// Builds dist/hw.js (the core) and dist/hw-outbound.js (an optional extra), minified, and prints
// their gzipped sizes as JSON (zlib level 9). The core must stay within 1,000 bytes gzipped;
// tests/test_tracker.py holds it to that as `gzip -9 -n` counts, a few bytes more.
import { buildSync } from "esbuild";
import { readFileSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";

const files = { "hw.js": "src/headwater.js", "hw-outbound.js": "src/outbound.js" };
const sizes = {};
mkdirSync("dist", { recursive: true });
for (const [out, entry] of Object.entries(files)) {
  buildSync({ entryPoints: [entry], outfile: `dist/${out}`, minify: true, target: "es2017" });
  const bytes = readFileSync(`dist/${out}`);
  sizes[out] = { bytes: bytes.length, gzip_bytes: gzipSync(bytes, { level: 9 }).length };
}
console.log(JSON.stringify(sizes));
if (sizes["hw.js"].gzip_bytes > 1000) {
  console.error(`hw.js is ${sizes["hw.js"].gzip_bytes} bytes gzipped: over the 1,000-byte budget`);
  process.exit(1);
}
