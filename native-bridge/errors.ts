/** What kind of input or step failed; the CLI maps every kind to a non-zero exit. */
export type EkkaErrorKind =
  | 'config'
  | 'model'
  | 'input'
  | 'source'
  | 'runtime'
  | 'cancelled'
  | 'annotations'
  | 'bridge';

/**
 * The one error type the engine throws on purpose. Its message names the file or record and says
 * what is wrong, so it can be shown to the user as it is, without a stack trace.
 */
export class EkkaError extends Error {
  constructor(
    readonly kind: EkkaErrorKind,
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'EkkaError';
  }
}

export function describeCause(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
