// Bundles the console into dist/console.js and dist/console.css with
// esbuild; `npm run bundle`. The output is committed and embedded in the
// batchops binary, and CI rebuilds it and fails when it differs.
import { build } from "esbuild";

await build({
  entryPoints: ["src/main.tsx"],
  outdir: "dist",
  entryNames: "console",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
