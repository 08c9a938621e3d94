// Check 1 of scripts/check_infra.sh: HCL syntax with HashiCorp's own parser (hcl2json, the Go
// HCL library compiled to WASM) and `terraform fmt` formatting with hclwrite's formatter
// (hcl-tools, also WASM): a file passes only if formatting it changes nothing.
//
// usage: node hcl_check.mjs --modules NODE_MODULES_DIR [--write] DIR_OR_FILE...
// Checks *.tf, *.tfvars and *.hcl (not under checks/). Exit 1 on any problem.
// --write rewrites badly formatted files in place (what `terraform fmt` would do).
import { createRequire } from "node:module";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const args = process.argv.slice(2);
const at = args.indexOf("--modules");
if (at < 0 || !args[at + 1]) {
  console.error("usage: node hcl_check.mjs --modules NODE_MODULES_DIR DIR_OR_FILE...");
  process.exit(2);
}
const require = createRequire(join(resolve(args[at + 1]), "noop.js"));
const { parse } = require("@cdktn/hcl2json");
const { format } = require("@cdktn/hcl-tools");
const write = args.includes("--write");
const targets = args.filter((a, i) => i !== at && i !== at + 1 && a !== "--write");

const isHcl = (f) => /\.(tf|tfvars|hcl)$/.test(f) && !f.endsWith(".tfvars.json");
function collect(p, out) {
  if (statSync(p).isDirectory()) {
    for (const e of readdirSync(p).sort()) {
      if (e === "checks" || e.startsWith(".")) continue;
      collect(join(p, e), out);
    }
  } else if (isHcl(p)) out.push(p);
  return out;
}

let bad = 0;
const files = targets.flatMap((t) => collect(t, []));
for (const f of files) {
  const name = relative(process.cwd(), f);
  const src = readFileSync(f, "utf8");
  try {
    await parse(f, src);
  } catch (e) {
    bad++;
    console.log(`ERROR ${name}: HCL syntax: ${String(e.message || e).trim()}`);
    continue;
  }
  const formatted = await format(src);
  if (formatted !== src && write) {
    writeFileSync(f, formatted);
    console.log(`formatted ${name}`);
  } else if (formatted !== src) {
    bad++;
    const a = src.split("\n"), b = formatted.split("\n");
    let line = 0;
    while (line < a.length && a[line] === b[line]) line++;
    console.log(`ERROR ${name}:${line + 1}: not formatted as terraform fmt would write it`);
    console.log(`  have: ${JSON.stringify(a[line] ?? "")}`);
    console.log(`  want: ${JSON.stringify(b[line] ?? "")}`);
  }
}
if (files.length === 0) {
  console.log("ERROR no .tf/.tfvars/.hcl files found");
  bad++;
}
console.log(`${files.length} file(s) checked, ${bad} problem(s)`);
process.exit(bad ? 1 : 0);
