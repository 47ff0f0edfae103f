// Validates ServiceMonitor and PrometheusRule objects against the
// prometheus-operator CRD schemas bundled in the npm package
// @kubernetes-models/prometheus-operator. Run by scripts/check-deploy.sh:
//   node scripts/validate-crds.mjs NODE_PREFIX OBJECTS.json
// The schemas check types, required fields and patterns (durations, ...);
// like the API server, they do not reject unknown fields.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, objectsFile] = process.argv.slice(2);
const entry = join(resolve(prefix), "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js");
const models = await import(pathToFileURL(entry).href);

let failed = 0;
const objects = JSON.parse(readFileSync(objectsFile, "utf8"));
for (const obj of objects) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const Model = obj.apiVersion === "monitoring.coreos.com/v1" ? models[obj.kind] : undefined;
  if (!Model) {
    console.log(`  problem: ${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`  ${name}: valid (monitoring.coreos.com/v1 schema)`);
  } catch (e) {
    console.log(`  problem: ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
