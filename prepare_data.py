"""
Turn a text corpus into train/val token files that train.py reads.

    python prepare_data.py                                   # TinyShakespeare, characters
    python prepare_data.py --tokenizer=gpt2                  # TinyShakespeare, GPT-2 BPE (tiktoken)
    python prepare_data.py --input=my_corpus.txt             # any UTF-8 text file
    python prepare_data.py --input=data/shakespeare_complete  # a folder: one *.txt a work, val = whole works

Writes data/<corpus>_<tokenizer>/{train.bin, val.bin, meta.json}: uint16 tokens, a 90/10 split, and the
codec (the character list for 'char', the tiktoken encoding name for 'gpt2') with the corpus' sha256, so
train.py can tell when the corpus changed and the files must be made again. A file is split at 90% of its
tokens; a folder by work: val is the files its `val_files` names (one a line), train the others, each side
the works in name order joined by SEPARATOR. Passages repeat within a play, so a cut inside one would leak.
"""
import hashlib
import json
import os
import sys

import numpy as np

import configurator

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
DEFAULT_INPUT = os.path.join(DATA, 'tinyshakespeare.txt')
# tiktoken downloads the GPT-2 BPE files on first use; the repo ships them (named by the SHA-1 of their URLs,
# as tiktoken's cache expects), so the gpt2 tokenizer works offline unless TIKTOKEN_CACHE_DIR says otherwise
BPE_CACHE = os.path.join(DATA, 'tiktoken_cache')
TOKENIZERS = ('char', 'gpt2')
VAL_FRACTION = 0.1  # a file corpus: the last this fraction of its tokens is val
VAL_FILES = 'val_files'  # a folder corpus: this file in it names the held-out works, one file name a line
SEPARATOR = '\n\n'  # between the works of a folder corpus: its files end without a newline, so a blank line


def atomic_write(path, write):
    """write(file) into a temporary file, then rename it over path: whoever reads path (another process, a run after
    a crash or a full disk) finds the old file or the new one, never half of one, and no temporary file is left."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk's error names no file: name the one that could not be written
        e.filename = e.filename or path
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class DataError(ValueError):
    """A problem with the corpus the user can fix; callers print it as one line."""


def data_dir_for(input_file, tokenizer):
    """Where the token files of (corpus, tokenizer) live: next to the corpus, named after both."""
    path = os.path.abspath(input_file)  # a folder's trailing slash goes
    return os.path.join(os.path.dirname(path), f'{os.path.splitext(os.path.basename(path))[0]}_{tokenizer}')


def corpus_files(input_file):
    """The files whose names and bytes make the corpus: itself, or a folder's *.txt (name order) and its val_files."""
    if not os.path.isdir(input_file):
        return [input_file]
    names = sorted(n for n in os.listdir(input_file) if n.endswith('.txt')) + [VAL_FILES]
    return [os.path.join(input_file, n) for n in names if os.path.isfile(os.path.join(input_file, n))]


def sha256_of(input_file):
    """A file's sha256; a folder's over each file's name, length and bytes (so that no two folders collide)."""
    h = hashlib.sha256()
    for path in corpus_files(input_file):
        with open(path, 'rb') as f:
            raw = f.read()
        if os.path.isdir(input_file):
            h.update(f"{os.path.basename(path)}\0{len(raw)}\0".encode())
        h.update(raw)
    return h.hexdigest()


def read_text(path):
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {e.start})") from None


def read_folder(folder):
    """(train, val) texts of a folder corpus: the works val_files holds out, and the others."""
    works = {os.path.basename(p): p for p in corpus_files(folder) if p.endswith('.txt')}
    list_path = os.path.join(folder, VAL_FILES)
    if not os.path.isfile(list_path):
        raise DataError(f"corpus folder {folder} has no {VAL_FILES} file naming its held-out works")
    held_out = set(read_text(list_path).split())
    unknown = ', '.join(sorted(held_out - set(works)))
    if unknown or not held_out or held_out == set(works):
        raise DataError(f"{list_path} must name some, not all, of the *.txt files in {folder}"
                        + (f"; not there: {unknown}" if unknown else ''))
    join = lambda names: SEPARATOR.join(read_text(works[n]) for n in sorted(names))
    return join(set(works) - held_out), join(held_out)


def read_corpus(input_file, min_chars):
    """(train, val) texts of a folder corpus, split by work; (text, None) of a file, split later by tokens."""
    if not os.path.exists(input_file):
        raise DataError(f"corpus not found: {input_file}")
    if os.path.isdir(input_file):
        return read_folder(input_file)
    text = read_text(input_file)
    if len(text) < min_chars:
        raise DataError(f"{input_file} has {len(text)} characters; need at least {min_chars} "
                        f"(enough for a train and a val block)")
    return text, None


def gpt2_encoding():
    """tiktoken's GPT-2 BPE. It downloads its files on first use, so offline it needs TIKTOKEN_CACHE_DIR."""
    import tiktoken
    os.environ.setdefault('TIKTOKEN_CACHE_DIR', BPE_CACHE)
    try:
        return tiktoken.get_encoding('gpt2')
    except Exception as e:  # network errors come in many types; all mean the same thing to the user
        raise DataError("tiktoken could not load the GPT-2 encoding (offline?): point TIKTOKEN_CACHE_DIR at a "
                        "folder holding its BPE files (see README), or use --tokenizer=char "
                        f"[{type(e).__name__}]") from None


class Codec:
    """encode/decode for either tokenizer, rebuilt from meta.json by train.py and sample.py."""

    def __init__(self, meta):
        self.meta = meta
        if meta['tokenizer'] == 'char':
            self.chars = meta['chars']
            self.stoi = {c: i for i, c in enumerate(self.chars)}
        else:
            self.enc = gpt2_encoding()

    @property
    def vocab_size(self):
        return self.meta['vocab_size']

    def encode(self, text):
        if self.meta['tokenizer'] == 'gpt2':
            return self.enc.encode_ordinary(text)
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise DataError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        if self.meta['tokenizer'] == 'gpt2':
            return self.enc.decode(list(ids))
        return ''.join(self.chars[i] for i in ids)


def prepare(input_file=DEFAULT_INPUT, tokenizer='char', min_tokens=2):
    """Tokenise input_file and write its train/val files; returns the data directory."""
    if tokenizer not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {tokenizer!r}; choose from {', '.join(TOKENIZERS)}")
    train_text, val_text = read_corpus(input_file, min_chars=min_tokens)
    if tokenizer == 'char':
        chars = sorted(set(train_text + (val_text or '')))
        meta = dict(tokenizer='char', vocab_size=len(chars), chars=chars)
    else:
        meta = dict(tokenizer='gpt2', vocab_size=gpt2_encoding().n_vocab)
    if meta['vocab_size'] > 2**16:
        raise DataError(f"{meta['vocab_size']} distinct tokens do not fit the uint16 token files (max 65536)")
    codec = Codec(meta)
    encode = lambda text: np.array(codec.encode(text), dtype=np.uint16)
    if val_text is None:
        ids = encode(train_text)
        n_val = int(len(ids) * VAL_FRACTION)
        train, val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
    else:
        train, val = encode(train_text), encode(val_text)
    if min(len(train), len(val)) < min_tokens:
        raise DataError(f"{input_file} gives {len(train):,} train and {len(val):,} val tokens: a split needs "
                        f"at least {min_tokens} tokens (block_size + 1)")
    out = data_dir_for(input_file, tokenizer)
    os.makedirs(out, exist_ok=True)
    # each file whole or not at all, so that a process (or machine) reading them never finds half of one
    atomic_write(os.path.join(out, 'train.bin'), train.tofile)
    atomic_write(os.path.join(out, 'val.bin'), val.tofile)
    meta.update(input_file=os.path.abspath(input_file), input_sha256=sha256_of(input_file),
                train_tokens=len(train), val_tokens=len(val))
    # written last: its presence means "complete"
    atomic_write(os.path.join(out, 'meta.json'), lambda f: f.write(json.dumps(meta).encode()))
    return out


def load_meta(data_dir):
    with open(os.path.join(data_dir, 'meta.json')) as f:
        return json.load(f)


def load_splits(data_dir, train_tokens=0, block_size=1):
    """(meta, {'train': tokens, 'val': tokens}) of a prepared corpus, memory-mapped; train_tokens > 0 keeps the
    training split's first train_tokens only (it must hold a window of block_size + 1 tokens)."""
    data = {s: np.memmap(os.path.join(data_dir, f'{s}.bin'), dtype=np.uint16, mode='r') for s in ('train', 'val')}
    if train_tokens:  # a batch never reads a split's last token: with N + 1, any window in the first N may come
        if not block_size < train_tokens <= len(data['train']):
            raise DataError(f"train_tokens={train_tokens:,} must hold a window (block_size + 1 tokens) and fit the "
                            f"training split ({len(data['train']):,} tokens)")
        data['train'] = data['train'][:train_tokens + 1]
    return load_meta(data_dir), data


def ensure_prepared(input_file, tokenizer, min_tokens):
    """The data dir for (input_file, tokenizer), (re)made if missing or if the corpus changed since."""
    if not os.path.exists(input_file):
        raise DataError(f"corpus not found: {input_file}")
    out = data_dir_for(input_file, tokenizer)
    try:
        meta = load_meta(out)
        if meta['input_sha256'] == sha256_of(input_file) and meta['val_tokens'] >= min_tokens:
            return out
    except (OSError, ValueError, KeyError):
        pass
    print(f"preparing {input_file} with the {tokenizer} tokenizer -> {out}")
    return prepare(input_file, tokenizer, min_tokens)


if __name__ == '__main__':
    configurator.catch_setup_errors()  # a bad argument or corpus, or a folder it cannot write: one line, exit 2
    args = dict(input=DEFAULT_INPUT, tokenizer='char')  # --input=FILE_OR_FOLDER --tokenizer=char|gpt2
    args.update(configurator.parse_args(args, sys.argv[1:]))
    meta = load_meta(out := prepare(args['input'], args['tokenizer']))
    print(f"{out}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
          f"vocab {meta['vocab_size']:,} ({meta['tokenizer']})")
