// Bundles index.js into one minified IIFE and writes, beside it, the licenses of the packages that went into it
// (read from esbuild's metafile: those with bytes in the output, so the list is what the bundle holds). Run through build.sh.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const out = path.resolve(here, "../../static/integrations/editor");
const pkg = JSON.parse(fs.readFileSync(path.join(here, "package.json"), "utf8"));

// index.js imports editor.css as a string (it puts it into <head>); minify it on the way in.
const cssAsMinifiedText = {
  name: "css-as-minified-text",
  setup(build) {
    build.onLoad({ filter: /\.css$/ }, async (args) => {
      const source = await fs.promises.readFile(args.path, "utf8");
      const { code } = await esbuild.transform(source, { loader: "css", minify: true });
      return { contents: code.trim(), loader: "text" };
    });
  },
};

const result = await esbuild.build({
  entryPoints: [path.join(here, "index.js")],
  outfile: path.join(out, "editor.js"),
  bundle: true,
  format: "iife",
  minify: true,
  target: ["es2020"],
  platform: "browser",
  plugins: [cssAsMinifiedText],
  legalComments: "none",
  banner: {
    js: `/*! cdphub editor ${pkg.version}: CodeMirror 6 (codemirror ${pkg.dependencies.codemirror}) built from ` +
      "integrations/static_src/editor; licenses of the bundled packages: LICENSE.txt beside this file */",
  },
  metafile: true,
  logLevel: "warning",
});

// node_modules/<name> or node_modules/@scope/<name> of every input file -> that package's directory
const packages = new Map();
const [bundle] = Object.values(result.metafile.outputs);
for (const [input, { bytesInOutput }] of Object.entries(bundle.inputs)) {
  if (!bytesInOutput) continue; // resolved, but nothing of it is left after tree shaking
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) packages.set(match[1], input.slice(0, match.index + match[0].length));
}

const sections = [...packages.keys()].sort().map((name) => {
  const dir = path.join(here, packages.get(name));
  const meta = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  const file = fs.readdirSync(dir).find((f) => /^licen[cs]e(\.md|\.txt)?$/i.test(f));
  if (!file) throw new Error(`${name}: no LICENSE file to copy`);
  const text = fs.readFileSync(path.join(dir, file), "utf8").trim();
  return `${"-".repeat(79)}\n${meta.name}@${meta.version} (${meta.license})\n\n${text}\n`;
});

fs.writeFileSync(
  path.join(out, "LICENSE.txt"),
  "editor.js bundles the following packages (from integrations/static_src/editor/package-lock.json).\n" +
    "Their licenses follow.\n\n" + sections.join("\n"),
);
const size = fs.statSync(path.join(out, "editor.js")).size;
console.log(`editor.js: ${(size / 1024).toFixed(1)} KiB, ${packages.size} packages (LICENSE.txt)`);
