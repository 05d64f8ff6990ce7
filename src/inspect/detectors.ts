// Built-in detectors: a pattern in the rule subset plus a validator that runs inside WASM
// on each candidate (wasm/assembly/validators.ts). A candidate the validator rejects is
// not a match, and a shorter candidate from the same start may win instead.

/** Validator ids shared with wasm/assembly/validators.ts. */
export const Validator = {
  none: 0,
  /** Luhn check + issuer prefix/length table (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro) */
  card: 1,
  /** area not 000/666/900-999, group not 00, serial not 0000 */
  ssn: 2,
  /** country code with its registered length, mod-97 = 1 */
  iban: 3,
  /** four octets <= 255 */
  ipv4: 4,
  /** 8 groups, or fewer with exactly one "::"; groups of 1-4 hex digits */
  ipv6: 5,
  /** upper and lower case letters and digits all present */
  secret: 6,
} as const;

export interface Detector {
  id: string;
  description: string;
  pattern: string;
  validator: number;
  /**
   * Prefilter hint: every match the validator accepts has an anchor byte with match bytes
   * on both sides, though the pattern alone allows anchors at its edges.
   */
  interiorAnchor?: boolean;
}

// Boundaries are one-byte look-arounds rather than \b so that, e.g., "_" or "." can be
// treated per detector (a card after "+" is a phone number, an IP after "." is part of a
// longer dotted string).
export const DETECTORS: readonly Detector[] = [
  {
    id: 'payment-card',
    description: 'payment card numbers: 13-19 digits, contiguous or in 4-4-4-4(-3) / 4-6-5 / 4-6-4 groups separated by space or dash; Luhn and issuer prefix checked',
    pattern: '(?<![A-Za-z0-9.+])(?:\\d{13,19}|\\d{4}[ -]\\d{4}[ -]\\d{4}[ -]\\d{1,4}(?:[ -]\\d{1,3})?|\\d{4}[ -]\\d{6}[ -]\\d{4,5})(?![A-Za-z0-9])',
    validator: Validator.card,
  },
  {
    id: 'us-ssn',
    description: 'US social security numbers written ddd-dd-dddd or ddd dd dddd; invalid areas (000, 666, 900-999), groups (00) and serials (0000) are not matches',
    pattern: '(?<![A-Za-z0-9-])(?:\\d{3}-\\d{2}-\\d{4}|\\d{3} \\d{2} \\d{4})(?![A-Za-z0-9-])',
    validator: Validator.ssn,
  },
  {
    id: 'email',
    description: 'email addresses (local@domain.tld)',
    pattern: '(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}(?![A-Za-z0-9-])',
    validator: Validator.none,
  },
  {
    id: 'phone',
    description: 'phone numbers: international (+, 8-15 digits, single or paired spaces/dots/dashes/parentheses between digits) and North American national formats ((555) 234-5678, 555-234-5678, 555.234.5678)',
    pattern:
      '(?<![A-Za-z0-9+])\\+[1-9](?:[ .()-]{0,2}\\d){7,14}(?![A-Za-z0-9])' +
      '|(?<![A-Za-z0-9.+-])(?:\\([2-9]\\d{2}\\) ?|[2-9]\\d{2}[-. ])[2-9]\\d{2}[-. ]\\d{4}(?![A-Za-z0-9-])',
    validator: Validator.none,
  },
  {
    id: 'iban',
    description: 'international bank account numbers, compact or in groups of four; country length and mod-97 checked',
    pattern: '(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])',
    validator: Validator.iban,
  },
  {
    id: 'ipv4',
    description: 'IPv4 addresses (dotted quad, octets <= 255)',
    pattern: '(?<![A-Za-z0-9.])(?:\\d{1,3}\\.){3}\\d{1,3}(?![A-Za-z0-9])',
    validator: Validator.ipv4,
  },
  {
    id: 'ipv6',
    description: 'IPv6 addresses, full or "::"-compressed (no embedded IPv4)',
    pattern: '(?<![A-Za-z0-9:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![A-Za-z0-9:])',
    validator: Validator.ipv6,
    // a valid address has 7 single colons between groups or a "::" next to a group ("::" alone is rejected)
    interiorAnchor: true,
  },
  {
    id: 'aws-access-key-id',
    description: 'AWS access key ids (AKIA..., ASIA..., and the other documented prefixes, 20 characters)',
    pattern: '(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}(?![A-Za-z0-9])',
    validator: Validator.none,
  },
  {
    id: 'aws-secret-key',
    description: 'secret-looking keys: exactly 40 base64 characters with upper case, lower case and digits (the shape of AWS secret access keys)',
    pattern: '(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])',
    validator: Validator.secret,
  },
  {
    id: 'jwt',
    description: 'JSON Web Tokens (three base64url segments, header and payload starting with "eyJ")',
    pattern: '(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\\.eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*(?![A-Za-z0-9_-])',
    validator: Validator.none,
  },
  {
    id: 'pem-private-key',
    description: 'PEM private key blocks, BEGIN to END line (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8); the body may contain JSON \\n escapes',
    pattern: '-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[A-Za-z0-9+/=:,. \\t\\r\\n\\\\-]*-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----',
    validator: Validator.none,
  },
];

export const DETECTOR_IDS = DETECTORS.map((d) => d.id);

export function detector(id: string): Detector | undefined {
  return DETECTORS.find((d) => d.id === id);
}
