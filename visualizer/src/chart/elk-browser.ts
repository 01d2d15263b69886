/**
 * elkjs for the page: the small API module here, the ~1.6 MB layout engine in a Web Worker loaded from
 * its own asset (emitted as is by Vite, never bundled), so layout never blocks the page and the main
 * bundle stays small.
 *
 * @example
 * const laid = await layoutChart(graph, browserElk());
 */
/// <reference types="vite/client" />
import * as elkApi from 'elkjs/lib/elk-api.js';
import workerUrl from 'elkjs/lib/elk-worker.min.js?url';
import type { ELKConstructorArguments } from 'elkjs/lib/elk-api.js';
import type { ElkEngine } from './layout.ts';

export function browserElk(): ElkEngine {
  // elk-api is CommonJS: the constructor is the module's default, or its `default.default` in some loaders.
  const d = (elkApi as unknown as { default: unknown }).default;
  const Ctor = (typeof d === 'function' ? d : (d as { default: unknown }).default) as new (args: ELKConstructorArguments) => ElkEngine;
  return new Ctor({ workerUrl });
}
