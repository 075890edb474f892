// The Kubernetes CRDs for the resource kinds that live in a cluster, derived from the TypeBox
// schemas in resources.ts so the apiserver and the folder source check the same shapes. Pure:
// scripts/gen-crds.ts writes the result to manifests/crds/, tests read it from here.
import type { TSchema } from '@sinclair/typebox';
import type { Problem } from './proxy-config.ts';
import { API_GROUP, AuthorizationPolicy, ResourceStatus, ServicePolicyResource, TrafficSplit, type ResourceKind } from './resources.ts';

/** A node of an OpenAPI v3 schema as apiextensions.k8s.io/v1 stores it. */
export type KubeSchema = { [key: string]: unknown };

// Value keywords both dialects share, and Kubernetes extensions, copied as they are.
const COPIED = new Set([
  'description', 'format', 'minimum', 'maximum', 'multipleOf', 'minLength', 'maxLength', 'pattern', 'minItems', 'maxItems',
  'minProperties', 'maxProperties', 'enum', 'default', 'nullable', 'x-kubernetes-validations', 'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys', 'x-kubernetes-map-type', 'x-kubernetes-preserve-unknown-fields',
]);
// Handled below (or meaningless to Kubernetes: TypeBox ids).
const HANDLED = new Set(['type', 'properties', 'required', 'items', 'anyOf', 'const', 'additionalProperties', 'patternProperties', 'exclusiveMinimum', 'exclusiveMaximum', '$id']);
const CEL_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * TypeBox (JSON Schema 2019-09) → a Kubernetes structural schema (kubernetes.io/docs/tasks/
 * extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
 * - TypeBox's symbols and `$id` are dropped; `additionalProperties: false` too (Kubernetes
 *   forbids it and prunes unknown fields instead); a `Record` becomes `additionalProperties`.
 * - A union of literals becomes `enum` (strings also get the longest literal as `maxLength`, so CEL
 *   cost estimates stay small).
 * - A union of objects becomes one object with every branch's properties and a CEL rule that
 *   holds when the object has exactly the fields of some branch (structural schemas forbid types
 *   inside `anyOf`, and unknown fields are pruned, so "fields present" is the whole question).
 * - Numeric `exclusiveMinimum: n` becomes `minimum: n, exclusiveMinimum: true` (OpenAPI 3.0).
 * Anything else it cannot say exactly throws, so no constraint is dropped silently.
 */
export function toKubeSchema(schema: TSchema, path = ''): KubeSchema {
  const s = schema as KubeSchema;
  const out: KubeSchema = {};
  for (const key of Object.keys(s)) {
    if (COPIED.has(key)) out[key] = structuredClone(s[key]);
    else if (!HANDLED.has(key)) throw new Error(`${path || '/'}: cannot express "${key}" in a CRD schema`);
  }
  for (const key of ['exclusiveMinimum', 'exclusiveMaximum'] as const) {
    if (typeof s[key] !== 'number') continue;
    const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
    out[bound] = s[key];
    out[key] = true;
  }
  if (Array.isArray(s.anyOf)) {
    const union = fromUnion(s.anyOf as TSchema[], path);
    const rules = [...((union['x-kubernetes-validations'] ?? []) as unknown[]), ...((out['x-kubernetes-validations'] ?? []) as unknown[])];
    return { ...union, ...out, ...(rules.length > 0 ? { 'x-kubernetes-validations': rules } : {}) };
  }
  if (s.const !== undefined) return { ...literalsEnum([s.const], path), ...out };
  switch (s.type) {
    case 'object':
      return { type: 'object', ...out, ...fromObject(s, path) };
    case 'array':
      if (s.items === undefined) throw new Error(`${path}: array without items`);
      return { type: 'array', ...out, items: toKubeSchema(s.items as TSchema, `${path}/items`) };
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      return { type: s.type, ...out };
    default:
      throw new Error(`${path || '/'}: no Kubernetes type for ${JSON.stringify(s.type)}`);
  }
}

function fromObject(s: KubeSchema, path: string): KubeSchema {
  const out: KubeSchema = {};
  const props = (s.properties ?? {}) as Record<string, TSchema>;
  if (Object.keys(props).length > 0) {
    out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, toKubeSchema(v, `${path}/${k}`)]));
  }
  if (Array.isArray(s.required) && s.required.length > 0) out.required = [...s.required];
  const pattern = s.patternProperties as Record<string, TSchema> | undefined;
  if (pattern !== undefined) {
    const entries = Object.entries(pattern);
    // TypeBox's Record(String, X) is patternProperties { '^(.*)$': X }: any key.
    if (entries.length !== 1 || entries[0]?.[0] !== '^(.*)$' || out.properties) throw new Error(`${path}: only Record(String, X) maps are supported`);
    out.additionalProperties = toKubeSchema(entries[0][1], `${path}/*`);
  } else if (typeof s.additionalProperties === 'object' && s.additionalProperties !== null) {
    if (out.properties) throw new Error(`${path}: properties and additionalProperties cannot be combined in Kubernetes`);
    out.additionalProperties = toKubeSchema(s.additionalProperties as TSchema, `${path}/*`);
  }
  return out;
}

function literalsEnum(values: unknown[], path: string): KubeSchema {
  const types = new Set(values.map((v) => (Number.isInteger(v) ? 'integer' : typeof v)));
  const [type] = types;
  if (types.size !== 1 || !['string', 'integer', 'number', 'boolean'].includes(type ?? '')) throw new Error(`${path}: literals of mixed or unsupported types`);
  const out: KubeSchema = { type, enum: values };
  if (type === 'string') out.maxLength = Math.max(...values.map((v) => (v as string).length));
  return out;
}

function fromUnion(variants: TSchema[], path: string): KubeSchema {
  if (variants.every((v) => 'const' in v)) return literalsEnum(variants.map((v) => v.const), path);
  if (!variants.every((v) => v.type === 'object' && v.patternProperties === undefined)) {
    throw new Error(`${path}: only unions of literals or of objects can be expressed in a CRD schema`);
  }
  const properties: Record<string, KubeSchema> = {};
  for (const v of variants) {
    for (const [k, prop] of Object.entries((v.properties ?? {}) as Record<string, TSchema>)) {
      if (!CEL_IDENT.test(k)) throw new Error(`${path}/${k}: not a CEL identifier`);
      const converted = toKubeSchema(prop, `${path}/${k}`);
      if (properties[k] && JSON.stringify(properties[k]) !== JSON.stringify(converted)) throw new Error(`${path}/${k}: differs between union branches`);
      properties[k] = converted;
    }
  }
  const all = Object.keys(properties);
  const required = variants.map((v) => (v.required ?? []) as string[]);
  const own = variants.map((v) => Object.keys(v.properties ?? {}));
  const branches = variants.map((_, i) => {
    const terms = [...(required[i] ?? []).map((k) => `has(self.${k})`), ...all.filter((k) => !own[i]?.includes(k)).map((k) => `!has(self.${k})`)];
    return terms.length > 0 ? terms.join(' && ') : 'true';
  });
  const oneKeyEach = own.every((keys, i) => keys.length === 1 && required[i]?.[0] === keys[0]);
  const message = oneKeyEach
    ? `exactly one of ${all.join(', ')} must be set`
    : `must have the fields of one of: ${own.map((keys) => `{${keys.join(', ')}}`).join(' or ')}`;
  const shared = all.filter((k) => required.every((r) => r.includes(k)));
  return {
    type: 'object',
    properties,
    ...(shared.length > 0 ? { required: shared } : {}),
    'x-kubernetes-validations': [{ rule: branches.map((b) => `(${b})`).join(' || '), message }],
  };
}

// ---- checks a kube-apiserver would make --------------------------------------------------------

const KUBE_KEYS = new Set([
  ...COPIED, 'type', 'properties', 'required', 'items', 'additionalProperties', 'exclusiveMinimum', 'exclusiveMaximum', 'title',
  'example', 'externalDocs', 'x-kubernetes-int-or-string', 'x-kubernetes-embedded-resource',
]);

/**
 * What would make the apiserver refuse a generated schema, or make its CEL rules too costly:
 * not structural (a node without type, junctors, `additionalProperties: false`, properties next to
 * additionalProperties, uniqueItems), a keyword Kubernetes does not know, an array without
 * `maxItems`, a string without `maxLength` or `enum`. `apiVersion`, `kind` and `metadata` at the root may only be typed.
 */
export function kubeSchemaProblems(schema: KubeSchema, path = '', root = true): Problem[] {
  const out: Problem[] = [];
  const at = path || '/';
  for (const key of Object.keys(schema)) if (!KUBE_KEYS.has(key)) out.push({ path: at, message: `"${key}" is not allowed in a structural schema here` });
  const open = schema['x-kubernetes-preserve-unknown-fields'] === true || schema['x-kubernetes-int-or-string'] === true;
  if (typeof schema.type !== 'string' && !open) out.push({ path: at, message: 'no type' });
  if (schema.additionalProperties === false) out.push({ path: at, message: 'additionalProperties: false (Kubernetes prunes unknown fields instead)' });
  if (schema.additionalProperties !== undefined && schema.properties !== undefined) out.push({ path: at, message: 'properties and additionalProperties together' });
  if (schema.type === 'array') {
    if (schema.items === undefined) out.push({ path: at, message: 'array without items' });
    if (schema.maxItems === undefined) out.push({ path: at, message: 'array without maxItems (CEL cost is unbounded)' });
  }
  if (schema.type === 'string' && schema.maxLength === undefined && schema.enum === undefined) {
    out.push({ path: at, message: 'string without maxLength (CEL cost is unbounded)' });
  }
  const props = (schema.properties ?? {}) as Record<string, KubeSchema>;
  for (const [k, v] of Object.entries(props)) {
    if (root && (k === 'metadata' || k === 'apiVersion' || k === 'kind')) {
      // Set and checked by the apiserver itself, never read by CEL: typed only.
      if (Object.keys(v).some((key) => key !== 'type' && key !== 'description')) out.push({ path: `/${k}`, message: `${k} may only be typed at the root` });
      continue;
    }
    out.push(...kubeSchemaProblems(v, `${path}/${k}`, false));
  }
  if (typeof schema.items === 'object' && schema.items !== null) out.push(...kubeSchemaProblems(schema.items as KubeSchema, `${path}/items`, false));
  if (typeof schema.additionalProperties === 'object' && schema.additionalProperties !== null) {
    out.push(...kubeSchemaProblems(schema.additionalProperties as KubeSchema, `${path}/*`, false));
  }
  return out;
}

// ---- the CRDs ----------------------------------------------------------------------------------

interface CrdSpec {
  kind: ResourceKind;
  plural: string;
  shortNames: string[];
  schema: TSchema;
  columns: Array<{ name: string; type: string; jsonPath: string; description?: string; priority?: number }>;
}

const AGE = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
/** Written by the control plane (control-plane/config/resource-status.ts); empty until it has seen the object. */
const ACCEPTED = { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status', description: 'In force (True), or not (False: kubectl describe says why)' };
const REASON = { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].reason', description: 'Why, in one word', priority: 1 };

export const CRD_SPECS: readonly CrdSpec[] = [
  {
    kind: 'TrafficSplit',
    plural: 'trafficsplits',
    shortNames: ['ts'],
    schema: TrafficSplit,
    columns: [
      { name: 'Service', type: 'string', jsonPath: '.spec.service', description: 'The apex service' },
      // A column shows one value: the whole list (services and weights), not `[*].service`'s first.
      { name: 'Backends', type: 'string', jsonPath: '.spec.backends', description: 'Backend services and weights' },
      ACCEPTED,
      REASON,
      AGE,
    ],
  },
  {
    kind: 'AuthorizationPolicy',
    plural: 'authorizationpolicies',
    shortNames: ['authzpolicy'],
    schema: AuthorizationPolicy,
    columns: [
      { name: 'Target', type: 'string', jsonPath: '.spec.targetRef.service', description: 'The guarded service' },
      { name: 'Port', type: 'integer', jsonPath: '.spec.targetRef.port', description: 'The guarded port (empty: every port)', priority: 1 },
      ACCEPTED,
      REASON,
      AGE,
    ],
  },
  {
    kind: 'ServicePolicy',
    plural: 'servicepolicies',
    shortNames: ['svcpolicy'],
    schema: ServicePolicyResource,
    columns: [
      { name: 'Target', type: 'string', jsonPath: '.spec.targetRef.service', description: 'The service its callers apply it to' },
      { name: 'Timeout', type: 'number', jsonPath: '.spec.timeouts.request', description: 'Whole-request timeout in ms, retries included (empty: the default, 15000)' },
      { name: 'Attempts', type: 'integer', jsonPath: '.spec.retry.attempts', description: 'Attempts including the first (empty: the default, 3)' },
      ACCEPTED,
      REASON,
      AGE,
    ],
  },
];

/** The openAPIV3Schema of a kind: apiVersion/kind/metadata as every CRD has them, spec and status derived. */
export function crdSchema(schema: TSchema): KubeSchema {
  const props = schema.properties as Record<string, TSchema>;
  if (!props.spec) throw new Error('a resource schema needs a spec');
  return {
    type: 'object',
    ...(schema.description ? { description: schema.description } : {}),
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
      kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
      metadata: { type: 'object' },
      spec: toKubeSchema(props.spec, '/spec'),
      status: toKubeSchema(ResourceStatus, '/status'),
    },
  };
}

export function customResourceDefinition(spec: CrdSpec): KubeSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${spec.plural}.${API_GROUP}`, labels: { 'app.kubernetes.io/part-of': 'meshlet' } },
    spec: {
      group: API_GROUP,
      names: {
        kind: spec.kind,
        listKind: `${spec.kind}List`,
        plural: spec.plural,
        singular: spec.kind.toLowerCase(),
        shortNames: spec.shortNames,
        categories: ['meshlet'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: spec.columns,
          schema: { openAPIV3Schema: crdSchema(spec.schema) },
        },
      ],
    },
  };
}
