# nanoGPT's shakespeare_char CPU run (its README: val loss about 1.88), for comparing dense mode with nanoGPT.
# python train.py config/shakespeare_char_cpu.py --mode=dense
out_dir = 'out-shakespeare-char-cpu'
n_layer = 4
n_head = 4
n_embd = 128
block_size = 64
batch_size = 12
max_iters = 2000
lr_decay_iters = 2000
dropout = 0.0
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
eval_iters = 20
rank = 32  # d/4, for the factorized modes
