# Receipt latency (p50, p99) against throughput from tools/bench_sweep.sh.
#   gnuplot -e "datafile='build/bench/sweep.dat'; outfile='docs/bench.png'; \
#               plottitle='...'; ceiling=11000" tools/bench_plot.gp
if (!exists("datafile")) datafile = 'build/bench/sweep.dat'
if (!exists("outfile")) outfile = 'docs/bench.png'
if (!exists("plottitle")) plottitle = 'tally bench'
set terminal pngcairo size 960,600 font "sans,11"
set output outfile
set title plottitle
set xlabel "throughput (tx/s, receipts per second of the measured window)"
set ylabel "receipt latency (ms, submit to f+1 matching replies)"
set logscale y
set grid xtics ytics mytics
set key top left
set xrange [0:*]
if (exists("ceiling") && ceiling > 0) {
    set arrow from ceiling, graph 0 to ceiling, graph 1 nohead dashtype 2 lc rgb "#888888"
    set label sprintf("crypto ceiling %d tx/s", ceiling) at ceiling, graph 0.5 right offset -1,0 textcolor rgb "#666666"
    set xrange [0:ceiling * 1.08]
}
plot datafile using 2:3 with linespoints pt 7 lw 2 title "p50", \
     datafile using 2:5 with linespoints pt 5 lw 2 title "p99", \
     datafile using 2:5:(sprintf("%d", $1)) with labels offset 0,1 font ",8" notitle
