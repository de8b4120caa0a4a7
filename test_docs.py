"""README.md, RESULTS.md and METHODS.md stay true to the repo: every asset, script and file they name or link exists,
every link to a section is a heading there, and README stays a page a newcomer reads whole. The clone is
self-contained: no file points outside it, and every `FILE §N` citation names a section N of a file in it."""
import glob
import os
import re
import subprocess

import pytest

from conftest import REPO

DOCS = ('README.md', 'RESULTS.md', 'METHODS.md')
OUTSIDE = '..' + '/shared/'  # the notes that lived beside the repo, which a clone does not have (split: not a mention)
CITATION = re.compile(r'([\w./-]+\.(?:md|py))`?\s?§(\d+)')  # METHODS.md §7, `lowrank.py` §3
README_MAX_LINES = 260  # issue 23: a teaching page of about 250 lines; the results live in RESULTS.md


def read(name):
    with open(os.path.join(REPO, name), encoding='utf-8', errors='replace') as f:
        return f.read()


def github_anchor(heading):
    """The id GitHub gives a heading: lowercase, punctuation dropped (letters, digits, _ and - stay), spaces to -."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(text):
    prose = re.sub(r'```.*?```', '', text, flags=re.S)  # a '# comment' in a code block is no heading
    return {github_anchor(h) for h in re.findall(r'^#{1,6} (.+)$', prose, re.M)}


def named_paths(text):
    """Repo paths a document names in prose or code: assets/..., experiments/*.sh|py (globs allowed)."""
    assets = re.findall(r'(?<![\w/.])assets/[\w./*-]*[\w/*]', text)
    scripts = re.findall(r'(?<![\w/.])experiments/[\w*-]+\.(?:sh|py)\b', text)
    return sorted(set(assets + scripts))


def links(text):
    """Targets of markdown links and images, except web addresses."""
    return [t for t in re.findall(r'\]\(([^)\s]+)\)', text) if not re.match(r'[a-z]+://', t)]


def broken_paths(name, text):
    return [p for p in named_paths(text) if not glob.glob(os.path.join(REPO, p))]


def broken_links(name, text, headings):
    """Links whose file is missing, or whose #anchor is no heading of the document it points into."""
    bad = []
    for target in links(text):
        path, _, fragment = target.partition('#')
        doc = path or name
        if path and not os.path.exists(os.path.join(REPO, path)):
            bad.append(target)
        elif fragment and doc in headings and fragment not in headings[doc]:
            bad.append(target)
    return bad


@pytest.fixture(scope='module')
def docs():
    return {name: read(name) for name in DOCS}


def test_github_anchor():
    assert github_anchor("Rank sweep: is there a corpus-determined optimal rank? (NFW's claim)") == \
        'rank-sweep-is-there-a-corpus-determined-optimal-rank-nfws-claim'
    assert github_anchor('Does η transfer across rank and width?') == 'does-η-transfer-across-rank-and-width'


@pytest.mark.parametrize('name', DOCS)
def test_every_named_path_exists(docs, name):
    assert named_paths(docs[name]), f'{name} names no asset or script: the pattern is broken'
    assert broken_paths(name, docs[name]) == []


@pytest.mark.parametrize('name', DOCS)
def test_every_link_resolves(docs, name):
    headings = {n: anchors(t) for n, t in docs.items()}
    assert broken_links(name, docs[name], headings) == []


def test_readme_links_each_claim_to_results(docs):
    """The claims table's rows, and the findings, point into RESULTS.md; README is short."""
    results_links = [t for t in links(docs['README.md']) if t.startswith('RESULTS.md#')]
    assert len(results_links) >= 8
    assert docs['README.md'].count('\n') <= README_MAX_LINES


def test_broken_link_is_caught(docs):
    """The checks can fail: a misspelt anchor, a missing asset and a missing script are each reported."""
    headings = {n: anchors(t) for n, t in docs.items()}
    text = '[x](RESULTS.md#no-such-section) `assets/tune/nothing.png` `bash experiments/nothing.sh`'
    assert broken_links('README.md', text, headings) == ['RESULTS.md#no-such-section']
    assert broken_paths('README.md', text) == ['assets/tune/nothing.png', 'experiments/nothing.sh']


def repo_files():
    """The repo's own text files: every file git tracks, or would track (new, not ignored), except the corpora in data/
    and assets' logs, CSVs and figures; assets' .md tables are prose and count."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout: git lists no files')
    names = [n for n in out.split('\0') if n and os.path.isfile(os.path.join(REPO, n))]
    return [n for n in names if not n.startswith(('assets/', 'data/')) or n.endswith('.md')]


def sections(path):
    """The numbered sections of a repo file: '## 4. ...' headings of a .md, '# 4. ...' comments of a .py; None when
    path is no file of the repo."""
    full = os.path.normpath(os.path.join(REPO, path))
    if not full.startswith(REPO + os.sep) or not os.path.isfile(full):
        return None
    text = read(os.path.relpath(full, REPO))
    if path.endswith('.md'):
        return set(re.findall(r'^#{1,6} (\d+)\.', re.sub(r'```.*?```', '', text, flags=re.S), re.M))
    return set(re.findall(r'^# (\d+)\. ', text, re.M))


def bad_citations(text):
    """`FILE §N` citations whose FILE is not in the repo or has no section N."""
    return [f'{path} §{n}' for path, n in CITATION.findall(text) if n not in (sections(path) or ())]


def test_the_clone_is_self_contained():
    """No file of the repo points at notes outside it, and every `FILE §N` it cites is a section of a repo file."""
    files = repo_files()
    assert 'METHODS.md' in files and 'README.md' in files
    texts = {name: read(name) for name in files}
    assert sum(len(CITATION.findall(t)) for t in texts.values()) >= 5  # the pattern finds the citations there are
    outside = [name for name, t in texts.items() if OUTSIDE in t]
    assert outside == [], f'files that point outside the repo ({OUTSIDE}): {outside}'
    bad = {name: b for name, t in texts.items() if (b := bad_citations(t))}
    assert bad == {}, f'citations of a missing file or section: {bad}'


def test_methods_sections_are_numbered_in_order():
    """METHODS.md's sections are numbered 1, 2, ... in order, so that a citation's number names one section."""
    numbers = re.findall(r'^## (\d+)\. ', read('METHODS.md'), re.M)
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)] and len(numbers) >= 7


def test_bad_citation_is_caught():
    """The checks can fail: a missing section, a missing file and a path outside the repo are each reported. (The
    strings are split so that this file itself cites nothing that is missing.)"""
    text = ('see METHODS.md §' + '99, `lowrank.py` §' + '3, NOWHERE.md §' + '1 and ' + OUTSIDE + 'METHODS.md §' + '7')
    assert bad_citations(text) == ['METHODS.md §' + '99', 'NOWHERE.md §' + '1', OUTSIDE + 'METHODS.md §' + '7']
    assert bad_citations('METHODS.md §' + '4 and lowrank.py §' + '4') == []
