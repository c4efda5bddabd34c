/**
 * The names seen of hard-linked upper files, by the file's identity, kept after the kernel
 * drops their nodes. When the name the kernel knows a file by is removed, the file lives on
 * under its other names, and its node (and every file handle of it) must follow it there
 * rather than turn unlinked: the kernel's node for a file may know one name of several (the
 * others linked in an earlier life of the node, or looked up by nobody since).
 *
 * Names are overlay paths as they were when seen; a rename of a directory above one leaves it
 * stale, so a name is only a place to look: the object there is checked to be the file.
 */

/** Files remembered at most, the least recently noted going first: some 200 bytes each. */
const FILES_KEPT = 65536;

export class LinkNames {
  private readonly byIdentity = new Map<string, Set<string>>();

  /** `path` is (or was just made) a name of the upper file `identity`. */
  note(identity: string, path: string): void {
    let names = this.byIdentity.get(identity);
    if (names) this.byIdentity.delete(identity);
    else names = new Set();
    names.add(path);
    this.byIdentity.set(identity, names);
    for (const oldest of this.byIdentity.keys()) {
      if (this.byIdentity.size <= FILES_KEPT) break;
      this.byIdentity.delete(oldest);
    }
  }

  /** `path` no longer names the file. */
  removed(identity: string, path: string): void {
    this.byIdentity.get(identity)?.delete(path);
  }

  /** The file's name `from` is now `to` (a rename). */
  moved(identity: string, from: string, to: string): void {
    const names = this.byIdentity.get(identity);
    if (!names?.delete(from)) return;
    names.add(to);
  }

  /** The file has no name left. */
  gone(identity: string): void {
    this.byIdentity.delete(identity);
  }

  /** The names remembered for the file, `except` left out. */
  namesOf(identity: string, except: string): string[] {
    return [...(this.byIdentity.get(identity) ?? [])].filter((p) => p !== except);
  }
}
