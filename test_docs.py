"""README.md and RESULTS.md stay true to the repo: every asset, script and file they name or link exists, every
link to a section is a heading there, and README stays a page a newcomer reads whole."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.abspath(__file__))
DOCS = ('README.md', 'RESULTS.md')
README_MAX_LINES = 260  # issue 23: a teaching page of about 250 lines; the results live in RESULTS.md


def read(name):
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
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
    return [p for p in named_paths(text) if not glob.glob(os.path.join(ROOT, p))]


def broken_links(name, text, headings):
    """Links whose file is missing, or whose #anchor is no heading of the document it points into."""
    bad = []
    for target in links(text):
        path, _, fragment = target.partition('#')
        doc = path or name
        if path and not os.path.exists(os.path.join(ROOT, path)):
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
