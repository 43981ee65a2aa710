// Validates Istio manifests (YAML files) against Istio's own schemas, as shipped by the npm
// package @kubernetes-models/istio: each file is parsed, turned into the model of its
// apiVersion/kind, and checked with the model's validate().
//
//   node tests/istio/validate.mjs FILE...
//
// Prints `ok FILE` per valid file; for an invalid one `FILE: problem` on stderr. Exit 0 when every
// file is valid, 1 when any is invalid, 2 on usage or I/O errors.
//
// validate() checks types, enums, required fields and limits, but lets unknown fields through
// (Kubernetes would prune them silently, hiding a typo such as `plugin_config`). So the validator
// is also run on a view of the manifest that records which fields it reads: a field of an object
// whose schema the validator walks, that it never read, is not in Istio's schema. Objects the
// schema leaves open (maps, `pluginConfig`) are read by enumeration or not at all, and pass.
// Of the CRDs' CEL rules, which validate() does not evaluate, the WasmPlugin's choice between
// selector and targetRefs is checked by hand.

import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { ServiceEntry } from "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";

const MODELS = [WasmPlugin, ServiceEntry, DestinationRule];
const TOP_LEVEL = new Set(["apiVersion", "kind", "metadata", "spec"]);
const METADATA = new Set(["name", "namespace", "labels", "annotations"]);
// The API server's rules for object names (DNS-1123 subdomain) and namespaces (DNS-1123 label).
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// A read-recording view of `value`: every object reached gets an entry in `seen` with the keys read
// and whether its keys were enumerated.
function watch(value, path, seen) {
  if (value === null || typeof value !== "object") return value;
  const entry = { target: value, path, read: new Set(), enumerated: false };
  seen.push(entry);
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return child;
      entry.read.add(key);
      if (!children.has(key)) children.set(key, watch(child, `${path}/${key}`, seen));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === "string") entry.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      entry.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(model) {
  const seen = [];
  // The model's own validate() (set on its class), run on the recording view.
  Object.getPrototypeOf(model).validate.call(watch(model, "", seen));
  const problems = [];
  for (const { target, path, read, enumerated } of seen) {
    if (Array.isArray(target) || enumerated || read.size === 0 || path === "" ||
        path === "/metadata") continue;
    for (const key of Object.keys(target)) {
      if (!read.has(key)) problems.push(`data${path}/${key} is not a field of the schema`);
    }
  }
  return [...new Set(problems)];
}

function problemsOf(doc) {
  if (!isPlainObject(doc)) return ["not a YAML mapping"];
  const Kind = MODELS.find((m) => m.apiVersion === doc.apiVersion && m.kind === doc.kind);
  if (!Kind) return [`no Istio model for apiVersion ${doc.apiVersion} kind ${doc.kind}`];
  const problems = [];
  for (const key of Object.keys(doc)) {
    if (!TOP_LEVEL.has(key)) problems.push(`data/${key} is not a field of ${doc.kind}`);
  }
  const meta = doc.metadata;
  if (!isPlainObject(meta)) {
    problems.push("data/metadata must be an object");
  } else {
    for (const key of Object.keys(meta)) {
      if (!METADATA.has(key)) problems.push(`data/metadata/${key} is not expected`);
    }
    if (typeof meta.name !== "string" || meta.name.length > 253 || !DNS_SUBDOMAIN.test(meta.name)) {
      problems.push(`data/metadata/name ${JSON.stringify(meta.name)} is not a DNS-1123 subdomain`);
    }
    if (meta.namespace !== undefined &&
        (typeof meta.namespace !== "string" || meta.namespace.length > 63 ||
         !DNS_LABEL.test(meta.namespace))) {
      problems.push(`data/metadata/namespace ${JSON.stringify(meta.namespace)} is not a DNS-1123 label`);
    }
  }
  // Istio's CRD has a CEL rule validate() does not run: a WasmPlugin names its proxies by one of
  // selector, targetRef and targetRefs.
  const spec = isPlainObject(doc.spec) ? doc.spec : {};
  if (doc.kind === "WasmPlugin" &&
      ["selector", "targetRef", "targetRefs"].filter((k) => spec[k] !== undefined).length > 1) {
    problems.push("data/spec: only one of selector, targetRef and targetRefs can be set");
  }
  const model = new Kind(doc);
  try {
    model.validate();
  } catch (err) {
    problems.push(err.message);
    return problems;
  }
  return problems.concat(unknownFields(model));
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}
let invalid = false;
for (const file of files) {
  let doc;
  try {
    doc = parse(readFileSync(file, "utf8"));
  } catch (err) {
    console.error(`${file}: ${err.message}`);
    process.exit(2);
  }
  const problems = problemsOf(doc);
  if (problems.length === 0) {
    console.log(`ok ${file}`);
  } else {
    invalid = true;
    for (const problem of problems) console.error(`${file}: ${problem}`);
  }
}
process.exit(invalid ? 1 : 0);
