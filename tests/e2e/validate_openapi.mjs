// Validates an OpenAPI document against the official JSON Schema of its version (3.1 here),
// with @seriousme/openapi-schema-validator (Ajv underneath). Exit 0 if valid, 1 with the
// errors as JSON on stderr otherwise. Usage: node validate_openapi.mjs openapi.yaml
import { Validator } from "@seriousme/openapi-schema-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate_openapi.mjs FILE");
  process.exit(2);
}
const validator = new Validator();
const res = await validator.validate(file);
if (!res.valid) {
  console.error(JSON.stringify(res.errors, null, 2));
  process.exit(1);
}
// Every $ref must resolve, too.
validator.resolveRefs();
console.log(`valid OpenAPI ${validator.version}`);
