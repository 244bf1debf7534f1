/** The name a witness cosigns under: `idns-witness/<thumbprint>` (a C2SP key name: no spaces, no "+"), so that a thumbprint alone names it. */
export function witnessName(thumbprint: string): string {
  return `idns-witness/${thumbprint}`;
}
