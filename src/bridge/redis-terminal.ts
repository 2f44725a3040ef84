/**
 * Terminal states of handed-off tasks, so that an old entry written back into a task stream never runs again: the
 * `done` markers (one function writes them, whoever ends a task), and the refusal of a genuine entry that
 * `openBatch` does not trust, whose tasks end with a typed failure at their origin when it can still hear it.
 */
import type { Redis } from 'ioredis';
import type { HandOffResult } from './bridge.js';
import type { RedisNode } from './redis-node.js';
import type { OpenedEntry } from './redis-streams.js';

type Pipeline = ReturnType<Redis['pipeline']>;

/** The stable code of the failure a refused entry's tasks report to their origin. */
export const STALE_DELIVERY_CODE = 'TASK_DELIVERY_STALE';

/**
 * Adds to `pipeline` the results of a refused entry's tasks (KEYS[1] its origin's results stream, KEYS[2] the origin's
 * registry entry; ARGV the sealed message): written only while the origin is registered or its stream is there, so
 * that an entry of a node gone for good (an old copy, most likely) does not make a results stream nobody reads.
 */
export const SEND_IF_HEARD =
  "if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then " +
  "return redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], 's', ARGV[2]) end return false";

/**
 * Adds to `pipeline` the `done` markers of `taskIds` (a task that has a result, or ended without one), each living
 * `doneTtlMs`: a delivery of one of them within that time is not run.
 */
export function addDoneMarkers(node: RedisNode, pipeline: Pipeline, taskIds: readonly string[]): void {
  if (taskIds.length === 0) return;
  const { doneTtlMs } = node.options;
  for (const taskId of taskIds) pipeline.set(node.key('done', taskId), '1', 'PX', doneTtlMs);
}

/**
 * Adds to `pipeline` what ends the tasks of entries refused by `openBatch` (the caller acks and deletes the
 * entries in the same pipeline): their `done` markers, and per entry a TASK_DELIVERY_STALE failure for each of its
 * tasks to its origin. A submitter still waiting (a genuine entry that waited too long) hears why its task did not
 * run; for a copy written back, the origin waits for none of them and drops the results.
 */
export function refuseEntries(node: RedisNode, pipeline: Pipeline, refused: readonly OpenedEntry[]): void {
  for (const { batch, refusal } of refused) {
    if (!refusal) continue;
    const results: HandOffResult[] = batch.tasks.map(({ taskId }) => ({
      taskId,
      node: node.nodeId,
      ok: false,
      error: {
        name: 'StaleDeliveryError',
        code: STALE_DELIVERY_CODE,
        message: `Task ${taskId} was not run: ${refusal.why}`,
      },
    }));
    addDoneMarkers(
      node,
      pipeline,
      batch.tasks.map((t) => t.taskId),
    );
    const sealed = node.signer.seal('results', { results });
    pipeline.eval(
      SEND_IF_HEARD,
      2,
      node.key('results', batch.origin),
      node.key('node', batch.origin),
      sealed.m,
      sealed.s,
    );
  }
}
