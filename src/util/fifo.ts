/**
 * A first-in first-out list with O(1) push and shift: an array and a head index, compacted as the head moves on.
 * (Evicting the oldest key of a Map instead walks past every deleted slot until V8 rehashes it: microseconds per
 * eviction once a bounded map is full.)
 */
export class Fifo<T> {
  #items: Array<T | undefined> = [];
  #head = 0;

  /** Items in the list. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Adds an item at the end. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The first item, left in place; `undefined` when empty. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Takes the first item out; `undefined` when empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head >= 1_024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/**
 * A set that keeps at most `max` keys and forgets the oldest first, in O(1) (a Set's own `values().next()` would
 * walk past the slots of every key already deleted).
 */
export class BoundedSet<K> {
  readonly #keys = new Set<K>();
  readonly #order = new Fifo<K>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#keys.size;
  }

  has(key: K): boolean {
    return this.#keys.has(key);
  }

  /** Adds `key` (a key already there keeps its place), forgetting the oldest past `max`. */
  add(key: K): void {
    if (this.#keys.has(key)) return;
    this.#keys.add(key);
    this.#order.push(key);
    while (this.#keys.size > this.#max) this.#keys.delete(this.#order.shift()!);
  }
}
