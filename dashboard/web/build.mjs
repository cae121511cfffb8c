// Bundles the dashboard's script (with uPlot) and styles into ../static, which the dashboard serves.
import { build } from "esbuild";

const common = { bundle: true, minify: true, logLevel: "warning", legalComments: "none" };
await build({ ...common, entryPoints: ["src/dashboard.js"], outfile: "../static/dashboard.js", format: "iife",
              target: ["es2019"] });
await build({ ...common, entryPoints: ["src/dashboard.css"], outfile: "../static/dashboard.css" });
