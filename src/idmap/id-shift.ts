import { IdMap } from './id-map';
import { type OverflowIds, systemOverflowIds } from './overflow';
import { ID, boundedNumber, expected } from '../util/bounds';
import { parseIdRanges } from './ranges';

/** The id options, named after fuse-overlayfs's -o options, with values as the user wrote them. */
export interface IdShiftOptions {
  /** `uidmapping=` value, LAYER:VIEW:COUNT[:…]. */
  readonly uidmapping?: string;
  /** `gidmapping=` value. */
  readonly gidmapping?: string;
  /** `squash_to_root`: attributes show every owner as 0:0. */
  readonly squashToRoot?: boolean;
  /** `squash_to_uid=` value; takes precedence over squashToRoot for uids. */
  readonly squashToUid?: string;
  /** `squash_to_gid=` value; takes precedence over squashToRoot for gids. */
  readonly squashToGid?: string;
}

/** The uid and gid maps of one mount. */
export class IdShift {
  constructor(
    readonly uids: IdMap,
    readonly gids: IdMap,
  ) {}

  /** The layer owner of a new object made by a caller with these view ids (see creatorToLayer). */
  creatorToLayer(uid: number, gid: number): { uid: number; gid: number } {
    return { uid: this.uids.creatorToLayer(uid), gid: this.gids.creatorToLayer(gid) };
  }
}

/**
 * Builds the maps from the options. Squash options only change the owners that attributes
 * show, as in fuse-overlayfs 1.10: creates and chown still go through the ranges.
 * Throws an Error naming the bad value when an option is malformed.
 */
export function createIdShift(options: IdShiftOptions, overflow: OverflowIds = systemOverflowIds()): IdShift {
  const rootSquash = options.squashToRoot === true ? 0 : undefined;
  const uidSquash = options.squashToUid === undefined ? rootSquash : parseSquashId('squash_to_uid', options.squashToUid);
  const gidSquash = options.squashToGid === undefined ? rootSquash : parseSquashId('squash_to_gid', options.squashToGid);
  const uidRanges = options.uidmapping === undefined ? [] : parseIdRanges('uidmapping', options.uidmapping);
  const gidRanges = options.gidmapping === undefined ? [] : parseIdRanges('gidmapping', options.gidmapping);
  return new IdShift(
    new IdMap(uidRanges, { overflowId: overflow.uid, squashTo: uidSquash }),
    new IdMap(gidRanges, { overflowId: overflow.gid, squashTo: gidSquash }),
  );
}

/** A squash_to_uid= or squash_to_gid= value; throws naming the option and the range. */
export function parseSquashId(option: string, value: string): number {
  const id = boundedNumber(value, ID);
  if (id === undefined) throw new Error(`${option}=${value}: ${expected(ID)}`);
  return id;
}
