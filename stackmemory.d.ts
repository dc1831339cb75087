// Types of `stackmemory-tiers/stackmemory`: StackMemory's adoption of the tiers.
import type { TierConfig, TierManager, GcReport, HostDatabase } from './index'

/** A Frame as StackMemory's FrameManager returns it: the frames row, JSON columns parsed. */
export type Frame = Record<string, unknown> & { frame_id: string }
export type Event = Record<string, unknown> & { event_id: string; seq: number }
export type Anchor = Record<string, unknown> & { anchor_id: string }

/** StackMemory's `frameLifecycleHooks` (the part the handle uses). */
export interface FrameLifecycleHooks {
  onFrameClosed(name: string, handler: (ctx: { frame: Frame; events?: Event[]; anchors?: Anchor[] }) => unknown, priority?: number): () => void
  onFrameCreated(name: string, handler: (ctx: { frame: Frame } | Frame) => unknown, priority?: number): () => void
}

export interface AttachOptions {
  /** StackMemory's own better-sqlite3 Database. */
  database: HostDatabase
  projectId: string
  /** Default: `~/.stackmemory/config.json`, then `REDIS_URL` / `DATABASE_URL`. */
  config?: Omit<TierConfig, 'database'>
  hooks?: FrameLifecycleHooks
  /** Where failures of background work go (hooks, search warnings); default: ignored. */
  onError?: (e: Error & { code?: string }) => void
}

export interface StackMemoryHandle {
  readonly tiers: TierManager
  readonly projectId: string
  getFrame(frameId: string): Promise<Frame | undefined>
  getFrameEvents(frameId: string, limit?: number): Promise<Event[]>
  getFrameAnchors(frameId: string): Promise<Anchor[]>
  searchFrames(query: string, options?: { projectId?: string; limit?: number; tiers?: Array<'hot' | 'warm' | 'cold' | 1 | 2 | 3> }): Promise<Array<Frame & { score: number }>>
  gc(options?: { retentionDays?: number; batchSize?: number; dryRun?: boolean; force?: boolean }): Promise<GcReport>
  archiveBeforeGc(adapter: { runGC(options?: { retentionDays?: number; batchSize?: number; dryRun?: boolean }): unknown }): () => void
  registerStorageCommands(program: unknown): unknown
  detach(): Promise<void>
}

export function attachStackMemory(options: AttachOptions): Promise<StackMemoryHandle>
export function registerStorageCommands(program: unknown): unknown
export function loadStackMemoryConfig(options?: { file?: string; home?: string; env?: Record<string, string | undefined> }): TierConfig
