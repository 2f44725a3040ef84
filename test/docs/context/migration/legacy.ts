// The migration guide's "your existing implementation": any object with the legacy calls.
import type { LegacyImplementation } from 'unified-orchestrator';

export declare const legacyOrchestrator: LegacyImplementation;
