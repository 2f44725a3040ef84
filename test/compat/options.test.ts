/** The compat resolvers fill in exactly what ADAPTER_DEFAULTS and TRAFFIC_ROUTER_DEFAULTS say. */
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ADAPTER_DEFAULTS,
  resolveAdapterOptions,
  resolveRouterOptions,
  TRAFFIC_ROUTER_DEFAULTS,
} from '../../src/compat/options.js';

const legacyStub = {
  spawnAgent: () => undefined,
  delegateTaskToAgent: () => undefined,
  getAgentStatus: () => undefined,
  getTaskStatus: () => undefined,
  shutdownAgent: () => undefined,
};

describe('compat options: the resolvers fill in the *_DEFAULTS objects', () => {
  it('resolveAdapterOptions', () => {
    expect(resolveAdapterOptions(undefined)).toEqual({ roles: undefined, errorCodes: {}, ...ADAPTER_DEFAULTS });
  });

  it('resolveRouterOptions', () => {
    const d = TRAFFIC_ROUTER_DEFAULTS;
    const r = resolveRouterOptions({ legacy: legacyStub, unified: legacyStub }, isDeepStrictEqual);
    expect(r).toEqual({
      legacy: legacyStub,
      unified: legacyStub,
      orchestrator: undefined,
      percent: d.percent,
      shadow: d.shadow,
      key: d.key,
      compare: isDeepStrictEqual,
      latencyRatio: d.latencyTolerance.ratio,
      latencyMinMs: d.latencyTolerance.minMs,
      shadowTimeoutMs: d.shadowTimeoutMs,
      maxShadowInFlight: d.maxShadowInFlight,
      pollIntervalMs: d.pollIntervalMs,
      notFoundCodes: new Set(d.notFoundCodes),
      maxOwnedIds: d.maxOwnedIds,
      metrics: { registry: undefined, prefix: undefined },
    });
  });

  it('the defaults are frozen, nested ones too', () => {
    expect(Object.isFrozen(ADAPTER_DEFAULTS)).toBe(true);
    expect(Object.isFrozen(TRAFFIC_ROUTER_DEFAULTS)).toBe(true);
    expect(Object.isFrozen(TRAFFIC_ROUTER_DEFAULTS.latencyTolerance)).toBe(true);
    expect(Object.isFrozen(TRAFFIC_ROUTER_DEFAULTS.notFoundCodes)).toBe(true);
  });
});
