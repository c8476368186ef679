// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
declare module 'plugboard:connector/action-hints@0.1.0' {
  /**
   * The hints of the actions that have them; an action left out has none.
   */
  export function actionHints(): Array<Hints>;
  /**
   * How one action behaves. Each field is a hint the plugin declares; the host's operator
   * policy decides what a client may call.
   */
  export interface Hints {
    /**
     * The action, by its name in `metadata().actions`.
     */
    action: string,
    /**
     * A short title for people, e.g. `Tag an order`.
     */
    title?: string,
    /**
     * It changes nothing outside the plugin (reads only).
     */
    readOnly: boolean,
    /**
     * It may delete or overwrite; false when it only adds. Meaningful when not read-only.
     */
    destructive: boolean,
    /**
     * Running it again with the same input has no further effect.
     */
    idempotent: boolean,
    /**
     * It reaches an open world (the internet, other people), not a closed domain.
     */
    openWorld: boolean,
    /**
     * A JSON Schema (as JSON text) describing the action's output, an object.
     */
    outputSchema?: string,
  }
}
