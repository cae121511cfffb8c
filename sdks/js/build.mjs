// Builds dist/hw.js (the core), dist/hw-outbound.js (an optional extra) and dist/hw-tm.js (the tag
// manager's runtime, compiled with each container by the collector), minified, and prints their
// gzipped sizes as JSON (zlib level 9). The core must stay within 1,000 bytes gzipped, the tag
// manager's runtime within 3,000; tests/test_tracker.py holds the core to that as `gzip -9 -n`
// counts, a few bytes more.
import { buildSync } from "esbuild";
import { readFileSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";

const files = { "hw.js": "src/headwater.js", "hw-outbound.js": "src/outbound.js", "hw-tm.js": "src/tm.js" };
const sizes = {};
mkdirSync("dist", { recursive: true });
for (const [out, entry] of Object.entries(files)) {
  buildSync({ entryPoints: [entry], outfile: `dist/${out}`, minify: true, target: "es2017" });
  const bytes = readFileSync(`dist/${out}`);
  sizes[out] = { bytes: bytes.length, gzip_bytes: gzipSync(bytes, { level: 9 }).length };
}
console.log(JSON.stringify(sizes));
for (const [name, budget] of [["hw.js", 1000], ["hw-tm.js", 3000]]) {
  if (sizes[name].gzip_bytes > budget) {
    console.error(`${name} is ${sizes[name].gzip_bytes} bytes gzipped: over the ${budget}-byte budget`);
    process.exit(1);
  }
}
