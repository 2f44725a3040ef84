// The migration guide's agent class, written by the reader.
declare class WriterAgent implements import('unified-orchestrator').Agent {
  execute(ctx: import('unified-orchestrator').TaskContext): Promise<unknown>;
}
