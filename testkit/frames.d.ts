// Types of testkit/frames.js (hand-written: the module is plain CommonJS so the bench and the
// crash child load it without a compiler).

import type { FrameBundle } from '../index'

export interface GenConfig {
  /** Seed: the same seed and options give the same bundles (default 7). */
  seed?: number
  /** Prefix of every id: frame `i` is `${prefix}-${i}` (default 'b'). */
  prefix?: string
  project?: string
  /** Base time in seconds: frame `i` is created about `base + 3 i` (default: 40 days ago). */
  base?: number
  /** Mixed time formats, JSON text columns, events out of seq order, digest words (default off). */
  variety?: boolean
  /** Indices of closed frames made ~100 KB. */
  large?: Iterable<number>
}

export class Gen {
  constructor(config?: GenConfig)
  readonly seed: number
  readonly prefix: string
  readonly project: string
  readonly base: number
  readonly variety: boolean
  readonly large: ReadonlySet<number>
  /** Bundles [from, to), parent-first. */
  range(from: number, to: number): FrameBundle[]
  /** Bundle `i`; depends only on the options and `i`. */
  bundle(i: number): FrameBundle
  /** The word planted in frame `i`'s digest_text with `variety`. */
  digestWord(i: number): string
}

export interface GenOptions {
  /** Seed: the same seed, count and base give the same bundles (the crash child relies on it). */
  seed?: number
  /** Prefix of every id, so runs never collide. */
  idPrefix?: string
  /** How many closed bundles of ~100 KB (default 4). */
  large?: number
  /** Base time in seconds (default: 30 days ago) — frames are this old or a few hours younger. */
  baseSeconds?: number
  projectId?: string
}

export interface GenResult {
  bundles: FrameBundle[]
  active: Set<string>
  closed: Set<string>
  large: Set<string>
  /** A unique word planted in each frame's digest_text. */
  digestWord: Map<string, string>
}

/** `n` bundles with `variety` on, and the sets the tests check against. */
export function genBundles(n: number, opts?: GenOptions): GenResult

export interface SearchText {
  name: string
  digest: string
  anchors: string
  events: string
}

/** The text the archive's tsvector is built from (mirrors Rust `Bundle::search_text`). */
export function searchText(b: FrameBundle): SearchText

/** What the Rust normaliser makes of a bundle (JS mirror). */
export function normalized(b: FrameBundle): FrameBundle

export interface SimpleBundleOptions {
  state?: 'active' | 'closed'
  createdAt?: number | string | null
  closedAt?: number | string | null
  digest?: string
  name?: string
  parent?: string
}

/** A small hand-made bundle (no children). */
export function simpleBundle(id: string, o?: SimpleBundleOptions): FrameBundle

/** mulberry32: a small, fast, seeded generator of numbers in [0, 1). */
export function rng(seed: number): () => number
