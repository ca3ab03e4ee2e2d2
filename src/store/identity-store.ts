/** Identity links for `identity-resolve` (filled in by the identity work). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface IdentityStore {}
