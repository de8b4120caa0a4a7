# nanoGPT's shakespeare_char GPU config (its README: val loss 1.4697 dense, ~3 minutes on an A100).
# python train.py config/shakespeare_char_gpu.py --mode=dense
# python train.py config/shakespeare_char_gpu.py --mode=spectron   # rank d/4 = 96
out_dir = 'out-shakespeare-char-gpu'
eval_interval = 250
eval_iters = 200
log_interval = 10
n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
batch_size = 64
dropout = 0.2
learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
rank = 96  # d/4
spectra_interval = 250
