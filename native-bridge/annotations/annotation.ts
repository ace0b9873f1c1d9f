import type { RootCauseLocation } from './taxonomy';

/** A developer's suspected root cause for one suspect, kept in `.ekka/annotations.json`. */
export interface Annotation {
  id: string;
  /** ISO 8601 time of creation, and of the last change. */
  created: string;
  updated?: string;
  /** The ekka.json the suspect came from, relative to the workspace folder. */
  diagnosis?: string;
  module: string;
  op?: string;
  ratio?: number;
  /** Relative to the workspace folder, 1-based line. */
  source?: { file: string; line: number };
  location: RootCauseLocation;
  /** A cause id from shared/TAXONOMY.md (see ROOT_CAUSES). */
  cause: string;
  note: string;
}

export interface AnnotationsFile {
  format: 'ekka-annotations';
  version: 1;
  annotations: Annotation[];
}

/** Where annotations live, relative to a workspace folder. */
export const ANNOTATIONS_PATH = '.ekka/annotations.json';
