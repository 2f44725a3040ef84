/**
 * Faithful or refused: what may cross processes. A task payload handed to another node, and the result that comes
 * back, travel as JSON; a value JSON would change (a `Map` becoming `{}`, a `Date` a string, `NaN` `null`, a function
 * dropped) would make the same task mean something else depending on where it runs. {@link checkFaithful} refuses
 * such a value with a ValidationError naming its path, instead of letting it change silently.
 *
 * The rule, what JSON keeps unchanged:
 * - `null`, `true`/`false`, strings, finite numbers;
 * - dense arrays (prototype `Array.prototype`, no holes, no other own properties) of such values;
 * - plain objects (prototype `Object.prototype` or `null`; own enumerable properties: string-keyed data properties
 *   only, no symbol keys, getters or setters) of such values. Non-enumerable properties are not part of the value
 *   (JSON, `Object.keys`, spread and structuredClone all leave them out): they are neither read nor sent.
 *
 * Two relaxations, because JSON keeps what a reader sees:
 * - a property of a plain object whose value is `undefined` is accepted: JSON drops the key, and reading it on the
 *   other side still gives `undefined` (only `'key' in value`, `Object.keys` and `hasOwn` see the difference). A
 *   payload or result that is `undefined` as a whole is accepted too (it arrives as `undefined`). `undefined` in an
 *   array is refused (it becomes `null`).
 * - `-0` is accepted and arrives as `0`, which it equals (`-0 === 0`); only `Object.is` tells them apart.
 *
 * Objects with a `null` prototype arrive with `Object.prototype`; an object reached twice (not a cycle) arrives as two
 * equal copies. Everything else is refused: `undefined` in an array, holes, `NaN`, `±Infinity`, BigInt, functions,
 * symbols, `Date`, `Map`, `Set`, typed arrays and buffers, `RegExp`, errors, boxed primitives, class instances,
 * proxies, cycles, values nested deeper than {@link CODEC_LIMITS}`.maxDepth` or holding more than `.maxValues` values.
 */
import { types } from 'node:util';
import { ValidationError } from '../errors.js';

/** The bounds of {@link checkFaithful}: what it refuses as too deep or too large to check (and to send). */
export const CODEC_LIMITS = Object.freeze({
  /** Nesting depth at most (the value itself is depth 0). */
  maxDepth: 512,
  /** Values (objects, arrays and primitives, counted each time they are reached) at most. */
  maxValues: 1_000_000,
});

/** Why a value cannot cross: what it would become, and what to pass instead. */
type Refusal = { readonly what: string; readonly fix: string };

/** A path step: a property name or an array index. */
type Step = string | number;

/** Carried through one check. */
interface Walk {
  /** Path steps from the root to the value being checked. */
  readonly steps: Step[];
  /** The objects and arrays on the path, the value's own container last (`stack[k]` is at `steps[0..k)`). */
  readonly stack: object[];
  /** Values visited so far. */
  values: number;
}

/** Thrown inside a walk with the path where it stopped; turned into a ValidationError at the top. */
class Refused extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.what);
  }
}

/**
 * Checks that `value` crosses processes unchanged (see the rule above), and throws a ValidationError otherwise:
 * `field` is the path of the offending value under `root` (`task.payload.items[3].when`, `result.total`), and the
 * message says what it would become and what to pass instead. Never throws anything else, and never calls a getter or
 * a proxy trap of `value` (a throwing or hostile object is refused like any other).
 *
 * @param value - The payload or result.
 * @param root - The name of `value` in the path, as `task.payload` or `result`.
 * @example
 * ```ts
 * checkFaithful({ when: new Date() }, 'task.payload');
 * // ValidationError: `task.payload.when` is a Date, which becomes a string across processes: pass date.toISOString() …
 * ```
 */
export function checkFaithful(value: unknown, root: string): void {
  if (value === undefined) return; // no payload, or an agent that returns nothing: it arrives as undefined
  const walk: Walk = { steps: [], stack: [], values: 0 };
  try {
    check(value, walk, false);
  } catch (error) {
    const refusal =
      error instanceof Refused
        ? error.refusal
        : // A stack overflow or anything unforeseen: still a refusal naming where it was.
          { what: 'could not be checked', fix: 'pass a plain object of JSON values' };
    const path = formatPath(root, walk.steps);
    throw new ValidationError(
      path,
      `\`${path}\` ${refusal.what}; ${refusal.fix}. A task's payload and result must be JSON values that cross ` +
        'processes unchanged (null, booleans, finite numbers, strings, dense arrays, plain objects)',
    );
  }
}

/** Checks one value; `inArray` when it is an array element (where `undefined` becomes `null`). */
function check(value: unknown, walk: Walk, inArray: boolean): void {
  if (++walk.values > CODEC_LIMITS.maxValues) {
    throw (
      cycleIn(walk) ??
      new Refused({
        what: `is past ${CODEC_LIMITS.maxValues} values (counting each value as often as it is reached)`,
        fix: 'pass a reference to the data (a URL, a key) instead',
      })
    );
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (Number.isFinite(value)) return;
      throw new Refused(
        Number.isNaN(value)
          ? { what: 'is NaN, which becomes null across processes', fix: 'pass null, or a string' }
          : {
              what: `is ${value > 0 ? 'Infinity' : '-Infinity'}, which becomes null across processes`,
              fix: 'pass null, a string, or Number.MAX_VALUE',
            },
      );
    case 'undefined':
      if (!inArray) return; // a property: JSON drops the key, and reading it still gives undefined
      throw new Refused({ what: 'is undefined in an array, which becomes null across processes', fix: 'pass null' });
    case 'bigint':
      throw new Refused({
        what: 'is a BigInt, which JSON cannot hold',
        fix: 'pass value.toString() (and BigInt(text) on the other side)',
      });
    case 'function':
      throw new Refused({
        what: `is a function, which ${inArray ? 'becomes null' : 'is dropped'} across processes`,
        fix: 'pass data only (a name to look the function up by on the other side)',
      });
    case 'symbol':
      throw new Refused({
        what: `is a symbol, which ${inArray ? 'becomes null' : 'is dropped'} across processes`,
        fix: 'pass a string',
      });
    default:
      break;
  }
  if (value === null) return;
  const object = value as object;
  if (types.isProxy(object)) {
    throw new Refused({
      what: 'is a Proxy, which arrives as a plain copy of what its traps show',
      fix: 'pass a plain object or array',
    });
  }
  // A cycle nests without end: found when the depth bound is reached (cheaper than a set of ancestors on every value).
  if (walk.steps.length >= CODEC_LIMITS.maxDepth) {
    walk.stack.push(object);
    throw (
      cycleIn(walk) ??
      new Refused({
        what: `is nested deeper than ${CODEC_LIMITS.maxDepth} levels`,
        fix: 'flatten the value, or pass a reference to it',
      })
    );
  }
  const proto: unknown = Object.getPrototypeOf(object);
  walk.stack.push(object);
  if (Array.isArray(object)) {
    if (proto !== Array.prototype) throw new Refused(instanceRefusal(object));
    checkArray(object as unknown[], walk);
  } else if (proto === Object.prototype || proto === null) {
    checkObject(object, walk);
  } else {
    throw new Refused(instanceRefusal(object));
  }
  walk.stack.pop();
}

/**
 * The first object on the path that contains itself, as a refusal with the path cut to where it refers back; or
 * `undefined` when the path holds no cycle.
 */
function cycleIn(walk: Walk): Refused | undefined {
  const seen = new Set<object>();
  for (let depth = 0; depth < walk.stack.length; depth++) {
    const object = walk.stack[depth]!;
    if (seen.has(object)) {
      walk.steps.length = depth;
      return new Refused({
        what: 'refers back to an object that contains it (a cycle), which JSON cannot hold',
        fix: 'break the cycle (pass ids instead of references)',
      });
    }
    seen.add(object);
  }
  return undefined;
}

/** A dense array without other own properties. */
function checkArray(array: unknown[], walk: Walk): void {
  const { length } = array;
  const symbols = Object.getOwnPropertySymbols(array);
  if (symbols.length > 0 && symbols.some((s) => isEnumerable(array, s))) {
    throw new Refused({ what: 'has symbol-keyed properties, which are dropped across processes', fix: 'remove them' });
  }
  const keys = Object.keys(array);
  for (let i = 0; i < length; i++) {
    const d = Object.getOwnPropertyDescriptor(array, i);
    walk.steps.push(i);
    if (d === undefined) {
      throw new Refused({
        what: 'is a hole in a sparse array, which becomes null across processes',
        fix: 'fill the array (pass null where there is nothing)',
      });
    }
    if (!('value' in d)) throw new Refused(accessorRefusal());
    check(d.value, walk, true);
    walk.steps.pop();
  }
  if (keys.length !== length) {
    const extra = keys.find((k) => !isIndex(k, length)) ?? '';
    walk.steps.push(extra);
    throw new Refused({
      what: 'is a property of an array other than its elements, which is dropped across processes',
      fix: 'pass an object holding the array and this value instead',
    });
  }
}

/**
 * A plain object: own, enumerable, string-keyed data properties only. Non-enumerable properties are not part of the
 * value (JSON, `Object.keys`, spread and structuredClone all leave them out) and are not read.
 */
function checkObject(object: object, walk: Walk): void {
  const symbols = Object.getOwnPropertySymbols(object);
  const symbol = symbols.length === 0 ? undefined : symbols.find((s) => isEnumerable(object, s));
  if (symbol !== undefined) {
    throw new Refused({
      what: `has a symbol-keyed property (${String(symbol)}), which is dropped across processes`,
      fix: 'use a string key',
    });
  }
  for (const key of Object.keys(object)) {
    const d = Object.getOwnPropertyDescriptor(object, key)!;
    walk.steps.push(key);
    if (!('value' in d)) throw new Refused(accessorRefusal());
    check(d.value, walk, false);
    walk.steps.pop();
  }
}

function accessorRefusal(): Refusal {
  return {
    what: 'is a getter or setter, which arrives as a plain value read once (or is dropped)',
    fix: 'pass the value itself',
  };
}

/** What an object that is not a plain object or array becomes, and what to pass instead. */
function instanceRefusal(object: object): Refusal {
  if (types.isDate(object)) {
    return {
      what: 'is a Date, which becomes a string across processes',
      fix: 'pass date.toISOString() (or date.getTime()) and rebuild the Date on the other side',
    };
  }
  if (types.isMap(object)) {
    return {
      what: 'is a Map, which becomes {} across processes',
      fix: 'pass Object.fromEntries(map) (string keys) or [...map] (entries)',
    };
  }
  if (types.isSet(object)) return { what: 'is a Set, which becomes {} across processes', fix: 'pass [...set]' };
  if (types.isTypedArray(object) || types.isAnyArrayBuffer(object) || types.isDataView(object)) {
    return {
      what: `is binary data (${nameOf(object)}), which does not survive JSON (it becomes an object of numbers, or {})`,
      fix: 'pass Array.from(bytes), or a base64 string (Buffer.from(bytes).toString("base64"))',
    };
  }
  if (types.isRegExp(object)) {
    return { what: 'is a RegExp, which becomes {} across processes', fix: 'pass regexp.source (and its flags)' };
  }
  if (types.isNativeError(object)) {
    return {
      what: 'is an Error, which becomes {} across processes',
      fix: 'pass { name: error.name, message: error.message }',
    };
  }
  if (types.isBoxedPrimitive(object)) {
    return {
      what: `is a boxed primitive (${nameOf(object)} object), which becomes a plain primitive across processes`,
      fix: 'pass the primitive (value.valueOf())',
    };
  }
  if (types.isWeakMap(object) || types.isWeakSet(object) || types.isPromise(object)) {
    return { what: `is a ${nameOf(object)}, which becomes {} across processes`, fix: 'pass the data it holds' };
  }
  if (Array.isArray(object)) {
    return {
      what: `is an instance of ${nameOf(object)}, which arrives as a plain array without its class`,
      fix: 'pass a plain array (Array.from(value))',
    };
  }
  return {
    what: `is an instance of ${nameOf(object)}, which arrives as a plain object without its prototype (its methods and getters)`,
    fix: 'pass a plain object ({ ...value }, or a toJSON()-like method of yours) and rebuild the instance on the other side',
  };
}

/** The class name of an object, read without calling getters; `an unnamed class` when there is none. */
function nameOf(object: object): string {
  try {
    const proto: unknown = Object.getPrototypeOf(object);
    if (typeof proto !== 'object' || proto === null) return 'an unnamed class';
    const ctor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
    if (typeof ctor !== 'function') return 'an unnamed class';
    const name: unknown = Object.getOwnPropertyDescriptor(ctor, 'name')?.value;
    return typeof name === 'string' && name !== '' ? name : 'an unnamed class';
  } catch {
    return 'an unnamed class';
  }
}

/** Whether `object` has an own enumerable property `key`. */
function isEnumerable(object: object, key: PropertyKey): boolean {
  return Object.prototype.propertyIsEnumerable.call(object, key);
}

/** Whether `key` is an array index below `length`. */
function isIndex(key: string, length: number): boolean {
  const n = Number(key);
  return Number.isInteger(n) && n >= 0 && n < length && String(n) === key;
}

/** `root` then each step: `.name` for identifiers, `[3]` for indices, `["odd key"]` otherwise. */
function formatPath(root: string, steps: readonly Step[]): string {
  let path = root;
  for (const step of steps) {
    if (typeof step === 'number') path += `[${step}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(step)) path += `.${step}`;
    else path += `[${JSON.stringify(step)}]`;
  }
  return path;
}
