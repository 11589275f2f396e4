/** The virtual PIV card (NIST SP 800-73-4) and its encrypted state file. */
export { createDefaultCardState, type PivCardState } from './card-state.js';
export { PIV_AID, PIV_ATR } from './constants.js';
export { createPivCard, createPivReader, PivCard, PivCardOptionsError, type PivCardOptions } from './piv-card.js';
export { PivStateFile, StateFileError } from './state-file.js';
