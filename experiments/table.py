"""
A markdown table of finished runs, from their log.jsonl files (run dirs, or *.log.jsonl copies under assets/):

    python experiments/table.py assets/compare/*.log.jsonl
"""
import json
import os
import statistics
import sys


def summarize(path):
    log = os.path.join(path, 'log.jsonl') if os.path.isdir(path) else path
    with open(log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    config = next(r for r in rows if r['kind'] == 'config')
    train = [r for r in rows if r['kind'] == 'train']
    evals = [r for r in rows if r['kind'] == 'eval']
    summary = next((r for r in rows if r['kind'] == 'summary'), {})
    first, last = evals[0], evals[-1]
    ranks = list(last['ranks'].values())
    eta = config['spectron_lr'] if config['mode'] == 'spectron' else None
    dw_ratio = max((r['max_dW'] / (eta * r['lr_factor']) for r in train if r.get('max_dW') == r.get('max_dW')),
                   default=None) if eta else None
    return dict(
        run=os.path.basename(path).replace('.log.jsonl', ''), mode=config['mode'],
        rank=config['rank'] if config['mode'] != 'dense' else '-',
        val=f"{last['val_loss']:.4f}", train=f"{last['train_loss']:.4f}",
        params=f"{last['params'] / 1e6:.2f}M", mflops=f"{first['flops_per_token'] / 1e6:.2f} → {last['flops_per_token'] / 1e6:.2f}"
        if first['flops_per_token'] != last['flops_per_token'] else f"{last['flops_per_token'] / 1e6:.2f}",
        mean_rank=f"{statistics.mean(ranks):.1f}",
        ms=f"{statistics.median(r['ms'] for r in (train[1:] or train)):.0f}",
        minutes=f"{summary['seconds'] / 60:.1f}" if summary else '?',
        spectra=f"{100 * summary['spectra_seconds'] / summary['seconds']:.1f}%" if summary else '?',
        max_dw_over_eta=f"{dw_ratio:.2f}" if dw_ratio else '-')


def main(paths):
    rows = [summarize(p) for p in paths]
    head = {'run': 'run', 'mode': 'mode', 'rank': 'rank', 'val': 'val loss', 'train': 'train loss',
            'params': 'params', 'mflops': 'MFLOPs/token', 'mean_rank': 'final mean rank', 'ms': 'median ms/iter',
            'minutes': 'minutes', 'spectra': 'spectra cost', 'max_dw_over_eta': 'max ‖ΔW‖₂/η'}
    print('| ' + ' | '.join(head.values()) + ' |')
    print('|' + '---|' * len(head))
    for r in rows:
        print('| ' + ' | '.join(str(r[k]) for k in head) + ' |')


if __name__ == '__main__':
    main(sys.argv[1:])
