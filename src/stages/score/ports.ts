/**
 * The document reader: how the score worker and `labels export` read the enriched document the
 * enrich worker last published for a pin. A port of its own, narrower than the enrich state
 * (stages/enrich/ports.ts): readers look documents up by pin id alone and never see the state
 * enrich keeps to build them. `adapters/redis/documents.ts` implements it.
 */
export interface DocumentReader {
  /** The last published document (JSON) of a pin, or null. */
  getDocument(pinId: string): Promise<string | null>;
  /** Many at once, in order (null: no document). */
  getDocuments(pinIds: readonly string[]): Promise<Array<string | null>>;
  /**
   * True when the enrich state marker is present. A missing document while it is absent means
   * "not rebuilt yet", not "no such pin" (see stages/enrich/rebuild.ts).
   */
  stateReady(): Promise<boolean>;
}
